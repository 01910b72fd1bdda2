"""``podsweep hpo``: read an HPO experiment's journal (works while the sweep runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..hpo import Results, results
from .printers import Output, table, to_yaml

app = typer.Typer(help="Read HPO experiments: trials, results, the best run.",
                  no_args_is_help=True, rich_markup_mode=None)


def summary(res: Results) -> str:
    counts: dict[str, int] = {}
    for t in res:
        counts[t.status] = counts.get(t.status, 0) + 1
    size = "unbounded" if res.size is None else f"{res.size} configurations"
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none yet"
    return (f"Experiment {res.experiment} ({res.header.get('strategy', '?')} search, {size}): "
            f"{len(res)} trials handed out — {states}")


@app.command()
def show(
    path: Annotated[Path, typer.Argument(help="hpo.jsonl, its experiment directory, or an "
                                              "HPO directory with one experiment")],
    metric: Annotated[Optional[str], typer.Option(help="rank by this metric "
                                                       "(default: the first reported)")] = None,
    mode: Annotated[Optional[str], typer.Option(help="max or min (default: min for names "
                                                     "like loss/error, else max)")] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
) -> None:
    """Every trial with its configuration and last metrics, best first, the best marked."""
    res = results(path)
    if output is Output.csv:
        typer.echo(res.to_csv(), nl=False)
        return
    if output is Output.json:
        typer.echo(res.to_json())
        return
    if output is Output.yaml:
        typer.echo(to_yaml(json.loads(res.to_json())))
        return
    typer.echo(summary(res))
    if not len(res):
        return
    if not res.metrics and metric is None:
        metric = None   # nothing reported yet: list the trials as they are
    else:
        try:
            metric, mode = res.resolve_metric(metric, mode)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    ranked = res.ranked(metric, mode or "max") if metric else list(res)
    best = res.best(metric, mode or "max") if metric else None
    headers = ["", "trial", "status", "attempts", "epoch", *res.parameters, *res.metrics]
    rows = [["best" if t is best else "", t.id, t.status, t.attempts, t.epoch,
             *(t.config.get(p) for p in res.parameters),
             *(t.last(m) for m in res.metrics)] for t in ranked]
    typer.echo(table(headers, rows))
    if metric and best is not None:
        typer.echo(f"\nBest by {metric} ({mode}): trial #{best.id} "
                   f"{best.config} {metric}={best.last(metric):.4g}")
    elif metric:
        typer.echo(f"\nNo trial has reported {metric!r} yet.")
