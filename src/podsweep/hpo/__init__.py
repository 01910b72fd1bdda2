"""podsweep.hpo — hand each pod of a sweep a distinct configuration, keep every result.

The walk-through's code runs unchanged but for the import::

    import podsweep.hpo as hpo

    hpo.init("/nfs/hpo")                     # the shared directory
    config = hpo.pick(grid=dict(batch_size=[32, 64, 128], lr=[1, 0.1, 0.01, 0.001]),
                      strategy=hpo.Strategy.GridSearch)
    for epoch in range(hpo.trial().epoch or 0, 10):   # resume a preempted trial
        ...
        hpo.report(epoch=epoch, metrics={"accuracy": acc})

Every variation and result of an experiment lands in one append-only file,
``<hpo_dir>/<experiment>/hpo.jsonl``; :func:`results` and :func:`best` read it, and so does
``podsweep hpo show``. Standard library only, Python 3.9+.

Beyond the walk-through, a sweep may search with TPE and stop weak trials early::

    config = hpo.pick(grid=dict(lr=hpo.loguniform(1e-4, 1.0), width=[16, 32, 64, 128]),
                      strategy=hpo.Strategy.TPE, metric="accuracy", mode="max",
                      pruner="asha", trials=40)
    for epoch in range(20):
        ...
        hpo.report(epoch=epoch, metrics={"accuracy": acc})
        if hpo.should_prune():       # the trial is recorded "pruned"; exit normally
            break
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ._errors import (
    HPOError,
    InvalidArgument,
    InvalidSpace,
    JournalError,
    NotInitialized,
    NoTrialsLeft,
    SpaceMismatch,
)
from ._ledger import PRUNED
from ._prune import ASHA, Median
from ._results import Report, Results, Trial, best, results
from ._session import DEFAULT_LEASE_SECONDS, Assignment, Session, install_hooks
from ._space import Strategy, loguniform, randint, uniform

__all__ = [
    "ASHA",
    "DEFAULT_LEASE_SECONDS",
    "PRUNED",
    "Assignment",
    "HPOError",
    "InvalidArgument",
    "InvalidSpace",
    "JournalError",
    "Median",
    "NoTrialsLeft",
    "NotInitialized",
    "Report",
    "Results",
    "Session",
    "SpaceMismatch",
    "Strategy",
    "Trial",
    "best",
    "finish",
    "init",
    "loguniform",
    "pick",
    "randint",
    "report",
    "results",
    "should_prune",
    "trial",
    "trial_dir",
    "uniform",
]

_session: Optional[Session] = None
_hooks_installed = False
_log = logging.getLogger("podsweep.hpo")


def _default_experiment() -> str:
    name = os.environ.get("PODSWEEP_JOB_NAME")
    uid = os.environ.get("PODSWEEP_JOB_UID")
    if name and uid:
        return f"{name}-{uid}"
    return name or "default"


def _lease_from_env() -> float:
    raw = os.environ.get("PODSWEEP_HPO_LEASE_SECONDS")
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        return float(raw)
    except ValueError:
        raise InvalidArgument(f"PODSWEEP_HPO_LEASE_SECONDS must be a number, "
                              f"got {raw!r}") from None


def _ensure_logging() -> None:
    # The walk-through's users read these lines in their pod's log; show them even when the
    # script configured no logging, without doubling them when it did.
    if not _log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False


def init(hpo_dir: str | os.PathLike[str], experiment: Optional[str] = None,
         lease_seconds: Optional[float] = None) -> Session:
    """Use ``hpo_dir`` (it must exist) to coordinate this process with the others.

    ``experiment`` names the sweep; by default it is the job's name and uid from the pod's
    environment (``PODSWEEP_JOB_NAME``-``PODSWEEP_JOB_UID``), so two runs of a job never
    mix. ``lease_seconds`` (default ``PODSWEEP_HPO_LEASE_SECONDS`` or 60) is how long this
    process's trial stays its own without a word from it before another may take it over.
    """
    global _session, _hooks_installed
    _ensure_logging()
    if _session is not None and _session.current is not None:
        _session.end("finished")
    lease = _lease_from_env() if lease_seconds is None else lease_seconds
    _session = Session(hpo_dir, experiment or _default_experiment(), lease)
    if not _hooks_installed:
        install_hooks(lambda: _session)
        _hooks_installed = True
    _log.info("Using HPO directory %s", hpo_dir)
    _log.debug("HPO journal: %s", _session.path)
    return _session


def _current() -> Session:
    if _session is None:
        raise NotInitialized("call podsweep.hpo.init(hpo_dir) first")
    return _session


def pick(grid: Mapping[str, Any], strategy: Strategy = Strategy.GridSearch,
         seed: int = 0, *, metric: Optional[str] = None, mode: Optional[str] = None,
         pruner: Any = None, trials: Optional[int] = None) -> Dict[str, Any]:
    """This process's configuration: an interrupted trial's first, else a fresh one.

    Interrupted: held by the dead pod that this pod replaces (a pod of the same job and
    index, which an engine never runs twice at once), preempted, or silent past its lease.
    Such a trial is resumed: :func:`trial` gives its attempt and the epoch it had reached.

    The first pick() of an experiment declares its space; a later one with another space is
    refused (:class:`SpaceMismatch`). Raises :class:`NoTrialsLeft` when every configuration
    has been handed out; in a pod (``PODSWEEP_JOB_UID``, ``PODSWEEP_POD_NAME`` and the pod's
    index in its environment) the script need not catch it: uncaught, it ends the pod with
    exit status 0 and one line on stderr, since nothing left to do is not a failure. For
    random search, ``seed`` fixes trial n's configuration; for TPE, given the same journal.

    ``metric`` (a name given to :func:`report`) and ``mode`` ("max" or "min"; by default
    "min" for names like loss or error) say what TPE optimises and a pruner judges;
    ``pruner`` is None, "asha", "median", or :class:`ASHA` / :class:`Median` with options;
    ``trials`` bounds how many trials are handed out. They are declared with the space:
    a pick() that declares others is refused as well.
    """
    return _current().pick(grid, strategy, seed, metric=metric, mode=mode, pruner=pruner,
                           trials=trials)


def report(epoch: int, metrics: Mapping[str, Any]) -> None:
    """Record this trial's ``metrics`` (name -> number) at ``epoch``."""
    _current().report(epoch, metrics)


def should_prune() -> bool:
    """Whether the pruner stopped this trial at its last report: if so, stop training.

    The trial is then already recorded ``pruned`` (a result, not a failure, never handed
    out again); leave the training loop and exit normally.
    """
    return _current().should_prune()


def finish() -> None:
    """Mark this process's trial finished now (also done by the next pick() and at exit)."""
    _current().end("finished")


def trial() -> Assignment:
    """The trial this process holds: id, config, attempt, and the epoch to resume after."""
    current = _current().current
    if current is None:
        raise NotInitialized("trial() before pick(): this process holds no trial")
    return current


def trial_dir() -> Path:
    """This trial's own directory (kept across attempts): put its checkpoints here."""
    directory = trial().dir
    directory.mkdir(parents=True, exist_ok=True)
    return directory
