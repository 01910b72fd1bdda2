"""What podsweep shows of an HPO experiment the same in ``podsweep hpo show`` and on the
job's page: the epochs that early stopping saved.

It reads :class:`podsweep.hpo.Results` only; the printers and templates stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from .hpo import PRUNED, Results


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
