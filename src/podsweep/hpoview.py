"""What podsweep shows of an HPO experiment, the same in ``podsweep hpo show`` and on the
job's page: which metric ranks the trials, and the epochs that early stopping saved.

Both read :class:`podsweep.hpo.Results` only; the printers and templates stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from .hpo import Results

PRUNED = "pruned"


def ranking(res: Results, metric: str | None, mode: str | None) -> tuple[str, str]:
    """The metric and mode to rank by: those asked for, else the experiment's declared ones
    (``pick(metric=, mode=)``), else the first metric reported and its usual direction.

    A mode asked for without a metric applies to the declared metric; the declared mode
    applies only to the declared metric. Raises HPOError when nothing was reported and
    nothing declared, InvalidArgument for a mode other than max or min.
    """
    declared = res.metric
    if metric is None and declared is not None:
        metric = declared
    if mode is None and metric is not None and metric == declared:
        mode = res.mode
    return res.resolve_metric(metric, mode)


@dataclass(frozen=True)
class EpochsSaved:
    """The epochs a sweep used against those a full run of every trial would have used."""

    used: int
    full: int

    @property
    def percent(self) -> int:
        """The share saved, rounded down so that it never claims more than was saved."""
        return (self.full - self.used) * 100 // self.full if self.full else 0

    def __str__(self) -> str:
        return (f"epochs: {self.used} used of {self.full} for a full run of every trial "
                f"({self.percent}% saved)")


def epochs_saved(res: Results) -> EpochsSaved | None:
    """The figure for a sweep that stops trials early (a pruner declared, or a trial pruned);
    None otherwise: there, fewer epochs than a full run means trials failed or still run,
    not epochs saved."""
    if res.pruner is None and not any(t.status == PRUNED for t in res):
        return None
    if not res.epochs_full:
        return None
    return EpochsSaved(res.epochs_used, res.epochs_full)
