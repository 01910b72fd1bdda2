// The job page's plots of one HPO experiment: learning curves (one line per trial and
// attempt; a resumed attempt dotted) and parallel coordinates of its hyperparameters
// against the metric. Drawn from /jobs/<project>/<job>/results.json?experiment=<path>.
async function plotExperiment(url, metric, curvesId, parcoordsId) {
  const data = await (await fetch(url)).json();
  const curves = [];
  for (const t of data.trials) {
    const attempts = [...new Set(t.reports.map(r => r.attempt))];
    for (const a of attempts) {
      const rs = t.reports.filter(r => r.attempt === a && r.metrics[metric] != null);
      curves.push({x: rs.map(r => r.epoch), y: rs.map(r => r.metrics[metric]), mode: "lines+markers",
        name: "#" + t.id + (a > 0 ? " resumed" : "") + " " + JSON.stringify(t.config),
        line: {dash: a > 0 ? "dot" : "solid"}, legendgroup: "t" + t.id});
    }
  }
  Plotly.newPlot(curvesId, curves, {margin: {t: 20}, xaxis: {title: {text: "epoch"}, dtick: 1},
    yaxis: {title: {text: metric}}, legend: {font: {size: 10}}}, {responsive: true, displaylogo: false});
  const last = t => { const rs = t.reports.filter(r => r.metrics[metric] != null); return rs.length ? rs[rs.length - 1].metrics[metric] : null; };
  const done = data.trials.filter(t => last(t) != null);
  const dims = data.parameters.map(p => {
    const vals = done.map(t => t.config[p]);
    if (vals.every(v => typeof v === "number")) {
      const pos = vals.filter(v => v > 0);
      if (pos.length === vals.length && Math.max(...pos) / Math.min(...pos) >= 100)
        return {label: "log10(" + p + ")", values: vals.map(v => Math.log10(v))};
      return {label: p, values: vals};
    }
    const cats = [...new Set(vals.map(String))];
    return {label: p, values: vals.map(v => cats.indexOf(String(v))), tickvals: cats.map((_, i) => i), ticktext: cats};
  });
  dims.push({label: metric, values: done.map(last)});
  Plotly.newPlot(parcoordsId, [{type: "parcoords", dimensions: dims,
    line: {color: done.map(last), colorscale: "Viridis", showscale: true}}], {margin: {t: 40, l: 60, r: 60}},
    {responsive: true, displaylogo: false});
}
