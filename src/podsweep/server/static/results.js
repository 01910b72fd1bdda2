// The job page's plots of one HPO experiment: learning curves (one line per trial and
// attempt; a resumed attempt dotted, a pruned trial dashed and faded, the best trial thick
// with a star) and parallel coordinates of its hyperparameters against the metric (pruned
// trials in grey, apart from the colour scale of the others). Drawn from
// /jobs/<project>/<job>/results.json?experiment=<path>&metric=<m>&mode=<max|min>.
const PRUNED_COLOUR = "#a0a6b0";

async function plotExperiment(url, metric, curvesId, parcoordsId) {
  const data = await (await fetch(url)).json();
  const curves = [];
  for (const t of data.trials) {
    const pruned = t.status === "pruned", best = t.id === data.best;
    const attempts = [...new Set(t.reports.map(r => r.attempt))];
    for (const a of attempts) {
      const rs = t.reports.filter(r => r.attempt === a && r.metrics[metric] != null);
      const label = (best ? "★ best " : "") + "#" + t.id + (a > 0 ? " resumed" : "")
        + (pruned ? " pruned" : "") + " " + JSON.stringify(t.config);
      curves.push({x: rs.map(r => r.epoch), y: rs.map(r => r.metrics[metric]),
        mode: "lines+markers", name: label, legendgroup: "t" + t.id,
        meta: {trial: t.id, status: t.status, best: best},
        opacity: pruned ? 0.45 : 1,
        line: {dash: pruned ? "dash" : a > 0 ? "dot" : "solid", width: best ? 4 : 2},
        marker: {size: best ? 8 : 5, symbol: best ? "star" : "circle"}});
    }
  }
  // the best trial's line on top of the others
  curves.sort((p, q) => Number(p.meta.best) - Number(q.meta.best));
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
  Plotly.newPlot(parcoordsId, [{type: "parcoords", dimensions: dims, line: parcoordsColours(data, done.map(last), done)}],
    {margin: {t: 40, l: 60, r: 60}}, {responsive: true, displaylogo: false});
}

// The lines' colours: the metric on a Viridis scale (brightest best), and a pruned trial
// grey. Parcoords colours by one number per line, so the numbers are placed on [0, 1]: 0
// for a pruned trial, [0.1, 1] for the others, with a scale that is grey below 0.1.
function parcoordsColours(data, values, trials) {
  const kept = values.filter((v, i) => trials[i].status !== "pruned");
  const lo = Math.min(...kept), hi = Math.max(...kept);
  const color = values.map((v, i) => {
    if (trials[i].status === "pruned") return 0;
    const x = hi > lo ? (v - lo) / (hi - lo) : 1;      // all alike: all at the best end
    return 0.1 + 0.9 * (data.mode === "min" ? 1 - x : x);
  });
  const viridis = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
  const colorscale = [[0, PRUNED_COLOUR], [0.0999, PRUNED_COLOUR],
    ...viridis.map((c, i) => [i === viridis.length - 1 ? 1 : 0.1 + 0.9 * i / (viridis.length - 1), c])];
  // (the last stop exactly 1: Plotly drops a scale that ends at 0.9999… for its default)
  return {color: color, colorscale: colorscale, cmin: 0, cmax: 1, showscale: false};
}
