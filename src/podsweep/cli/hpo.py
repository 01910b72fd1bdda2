"""``podsweep hpo``: read an HPO experiment's journal (works while the sweep runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import UsageError
from .printers import Output, table, to_yaml

if TYPE_CHECKING:     # the HPO library is imported by these commands alone, when they run
    from ..hpo import Results, Trial

app = typer.Typer(help="Read HPO experiments: trials, results, the best run.",
                  no_args_is_help=True, rich_markup_mode=None)


def summary(res: Results) -> str:
    counts: dict[str, int] = {}
    for t in res:
        counts[t.status] = counts.get(t.status, 0) + 1
    bound = res.header.get("trials")
    if isinstance(bound, int):
        size = f"up to {bound} trials"
    else:
        size = "unbounded" if res.size is None else f"{res.size} configurations"
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none yet"
    return (f"Experiment {res.experiment} ({res.header.get('strategy', '?')} search, {size}): "
            f"{len(res)} trials handed out — {states}")


@app.command()
def show(
    path: Annotated[Path, typer.Argument(help="hpo.jsonl, its experiment directory, or an "
                                              "HPO directory with one experiment")],
    metric: Annotated[Optional[str], typer.Option(help="rank by this metric (default: the "
                                                       "one pick() declared, else the first "
                                                       "reported)")] = None,
    mode: Annotated[Optional[str], typer.Option(help="max or min (default: the declared one, "
                                                     "else min for names like loss/error, "
                                                     "else max)")] = None,
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
) -> None:
    """Every trial with its configuration, the epochs it ran and its last metrics, best
    first, the best marked; pruned trials say at which epoch they stopped."""
    from ..hpo import HPOError, results
    from ..hpoview import epochs_saved

    res = results(path)
    if output is Output.csv:
        typer.echo(res.to_csv(), nl=False)
        return
    if output in (Output.json, Output.yaml):
        data = document(res)
        typer.echo(json.dumps(data, indent=2) if output is Output.json else to_yaml(data))
        return
    typer.echo(summary(res))
    if not len(res):
        return
    if res.metrics or res.metric is not None or metric is not None:
        try:   # by default the metric and mode the sweep declared, else the first reported
            metric, mode = res.resolve_metric(metric, mode)
        except HPOError as exc:
            raise UsageError(str(exc)) from None
    ranked = res.ranked(metric, mode) if metric and mode else list(res)
    best = res.best(metric, mode) if metric and mode else None
    headers = ["", "trial", "status", "attempts", "epochs", *res.parameters, *res.metrics]
    rows = [["best" if t is best else "", t.id, status(t), t.attempts, t.epochs,
             *(t.config.get(p) for p in res.parameters),
             *(t.last(m) for m in res.metrics)] for t in ranked]
    typer.echo(table(headers, rows))
    if metric and best is not None:
        typer.echo(f"\nBest by {metric} ({mode}): trial #{best.id} "
                   f"{best.config} {metric}={best.last(metric):.4g}")
    elif metric:
        typer.echo(f"\nNo trial has reported {metric!r} yet.")
    saved = epochs_saved(res)
    if saved is not None:
        typer.echo(str(saved))


def status(t: Trial) -> str:
    """A pruned trial's status with the last epoch it reported: ``pruned@3``."""
    from ..hpo import PRUNED

    if t.status == PRUNED and t.epoch is not None:
        return f"{PRUNED}@{t.epoch}"
    return t.status


def document(res: Results) -> dict[str, Any]:
    """The experiment for -o json|yaml: the library's export, with the declaration, the
    epochs each trial ran and the sweep's totals."""
    data: dict[str, Any] = json.loads(res.to_json())
    trials = data.pop("trials", [])
    for entry, t in zip(trials, res):
        entry.setdefault("epochs", t.epochs)
    for key, value in (("metric", res.metric), ("mode", res.mode), ("pruner", res.pruner),
                       ("max_trials", res.header.get("trials")),
                       ("epochs_used", res.epochs_used), ("epochs_full", res.epochs_full)):
        data.setdefault(key, value)
    data["trials"] = trials        # last: the long part
    return data
