"""Reading an experiment's results from its journal: every trial, the best one, exports.

Readers take no lock and may read while the sweep runs: a torn last line is left for later.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union, overload

from ._errors import HPOError, InvalidArgument, JournalError
from ._journal import Event, Reader
from ._ledger import ENDINGS, RUNNING, check_header
from ._prune import default_mode
from ._session import JOURNAL_NAME

LOST = "lost"
"""A running trial whose lease ran out: its process died without a word."""


@dataclass
class Report:
    epoch: int
    metrics: Dict[str, Any]
    attempt: int
    time: float


@dataclass
class Trial:
    """One trial of an experiment, as its journal tells it."""

    id: int
    config: Dict[str, Any]
    status: str
    attempts: int = 1
    reports: List[Report] = field(default_factory=list)
    error: Optional[str] = None
    started: Optional[float] = None
    ended: Optional[float] = None
    worker: Optional[str] = None
    _last_seen: float = field(default=0.0, repr=False)
    _lease: float = field(default=60.0, repr=False)

    def last(self, metric: str) -> Optional[float]:
        """The last value reported for ``metric`` (None if it was never reported)."""
        for report in reversed(self.reports):
            if report.metrics.get(metric) is not None:
                return float(report.metrics[metric])
        return None

    @property
    def epoch(self) -> Optional[int]:
        return max((r.epoch for r in self.reports), default=None)

    @property
    def epochs(self) -> int:
        """How many epochs the trial ran: the distinct epochs it reported."""
        return len({r.epoch for r in self.reports})

    @property
    def metric_names(self) -> List[str]:
        names: Dict[str, None] = {}
        for report in self.reports:
            names.update(dict.fromkeys(report.metrics))
        return list(names)


class Results(Sequence[Trial]):
    """Every trial handed out so far, by id, with the experiment's declaration."""

    def __init__(self, path: Path, header: Optional[Event], trials: List[Trial]) -> None:
        self.path = path
        self.header = header or {}
        self._trials = trials

    @property
    def experiment(self) -> str:
        return str(self.header.get("name", self.path.parent.name))

    @property
    def size(self) -> Optional[int]:
        """Configurations in the space (None for an unbounded random search)."""
        size = self.header.get("size")
        return int(size) if size is not None else None

    @property
    def parameters(self) -> List[str]:
        return list(self.header.get("space", {}))

    @property
    def metric(self) -> Optional[str]:
        """The metric the experiment declared it optimises (None if it declared none)."""
        metric = self.header.get("metric")
        return metric if isinstance(metric, str) else None

    @property
    def mode(self) -> Optional[str]:
        mode = self.header.get("mode")
        return mode if mode in ("max", "min") else None

    @property
    def pruner(self) -> Optional[Dict[str, Any]]:
        pruner = self.header.get("pruner")
        return dict(pruner) if isinstance(pruner, dict) else None

    @property
    def epochs_used(self) -> int:
        """Epochs the sweep ran, over all its trials."""
        return sum(t.epochs for t in self._trials)

    @property
    def epochs_full(self) -> int:
        """Epochs a full run of every trial handed out would have used: the longest
        trial's epochs, times the trials."""
        return max((t.epochs for t in self._trials), default=0) * len(self._trials)

    @property
    def metrics(self) -> List[str]:
        names: Dict[str, None] = {}
        for trial in self._trials:
            names.update(dict.fromkeys(trial.metric_names))
        return list(names)

    @overload
    def __getitem__(self, index: int) -> Trial: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Trial]: ...
    def __getitem__(self, index: Union[int, slice]) -> Union[Trial, Sequence[Trial]]:
        return self._trials[index]

    def __len__(self) -> int:
        return len(self._trials)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self._trials)

    def resolve_metric(self, metric: Optional[str], mode: Optional[str]) -> tuple[str, str]:
        """The metric to rank by and its mode: by default the declared ones, else the
        first metric reported."""
        if metric is None:
            metric = self.metric
            if metric is None:
                if not self.metrics:
                    raise HPOError(f"no trial of {self.experiment!r} has reported a metric "
                                   f"yet")
                metric = self.metrics[0]
        if mode is None:
            mode = self.mode if metric == self.metric and self.mode else default_mode(metric)
        if mode not in ("max", "min"):
            raise InvalidArgument(f"mode must be 'max' or 'min', got {mode!r}")
        return metric, mode

    def ranked(self, metric: str, mode: str = "max") -> List[Trial]:
        """Trials that reported ``metric``, best first (ties: lower id first), then the rest."""
        scored = [t for t in self._trials if t.last(metric) is not None]
        sign = -1.0 if mode == "max" else 1.0
        scored.sort(key=lambda t: (sign * (t.last(metric) or 0.0), t.id))
        rest = [t for t in self._trials if t.last(metric) is None]
        return scored + rest

    def best(self, metric: Optional[str] = None, mode: Optional[str] = None
             ) -> Optional[Trial]:
        """The trial whose last reported ``metric`` is best, or None if none reported it.

        By default, the metric and mode the experiment declared."""
        metric, mode = self.resolve_metric(metric, mode)
        ranked = self.ranked(metric, mode)
        return ranked[0] if ranked and ranked[0].last(metric) is not None else None

    def rows(self) -> List[Dict[str, Any]]:
        """One flat row per trial: id, status, attempts, parameters, last metrics, error."""
        rows = []
        for t in self._trials:
            row: Dict[str, Any] = {"trial": t.id, "status": t.status, "attempts": t.attempts,
                                   "epoch": t.epoch, "epochs": t.epochs}
            row.update(t.config)
            row.update({m: t.last(m) for m in self.metrics})
            row["error"] = t.error
            rows.append(row)
        return rows

    def to_csv(self) -> str:
        buffer = io.StringIO()
        rows = self.rows()
        fields = ["trial", "status", "attempts", "epoch", "epochs", *self.parameters,
                  *self.metrics, "error"]
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def to_json(self) -> str:
        trials = []
        for t in self._trials:
            d = asdict(t)
            d.pop("_last_seen")
            d.pop("_lease")
            trials.append(d)
        return json.dumps({"experiment": self.experiment, "path": str(self.path),
                           "strategy": self.header.get("strategy"), "size": self.size,
                           "metric": self.metric, "mode": self.mode, "pruner": self.pruner,
                           "epochs_used": self.epochs_used, "epochs_full": self.epochs_full,
                           "trials": trials}, indent=2)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame of :meth:`rows`, indexed by trial (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise HPOError("to_dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows()).set_index("trial")


def journal_path(path: str | os.PathLike[str]) -> Path:
    """The journal meant by ``path``: the file, its experiment directory, or an HPO
    directory that holds exactly one experiment."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / JOURNAL_NAME).is_file():
        return p / JOURNAL_NAME
    if p.is_dir():
        found = sorted(c.parent.name for c in p.glob(f"*/{JOURNAL_NAME}"))
        if len(found) == 1:
            return p / found[0] / JOURNAL_NAME
        if found:
            raise HPOError(f"{p} holds {len(found)} experiments ({', '.join(found)}); "
                           f"name one: {p / found[0]}")
        raise HPOError(f"no HPO journal ({JOURNAL_NAME}) in {p}")
    raise HPOError(f"{p}: no such file or directory")


def fold(events: List[Event], trials: Dict[int, Trial], header: Optional[Event]
         ) -> Optional[Event]:
    """Apply reader-side events to ``trials``; returns the (possibly new) header."""
    for e in events:
        kind = e.get("event")
        try:
            if kind == "experiment":
                if header is None:
                    check_header(e)
                    header = e
                continue
            tid, attempt, when = int(e["trial"]), int(e.get("attempt", 0)), float(e["time"])
            t = trials.get(tid)
            if kind == "assign":
                if t is None:
                    t = trials[tid] = Trial(tid, dict(e.get("config", {})), RUNNING,
                                            started=when)
                t.attempts = max(t.attempts, attempt + 1)
                t.status, t.ended, t.error = RUNNING, None, None
                t.worker, t._last_seen = e.get("worker"), when
                t._lease = float(e.get("lease", 60))
            elif t is None:
                continue
            elif kind == "report":
                t.reports.append(Report(int(e["epoch"]), dict(e.get("metrics", {})),
                                        attempt, when))
                t._last_seen = max(t._last_seen, when)
            elif kind == "heartbeat":
                t._last_seen = max(t._last_seen, when)
            elif kind in ENDINGS and attempt == t.attempts - 1 and t.status == RUNNING:
                t.status, t.ended = ENDINGS[kind], when
                t.error = e.get("error")
        except (KeyError, TypeError, ValueError):
            continue
    return header


def results(path: str | os.PathLike[str]) -> Results:
    """Every trial of the experiment at ``path`` (a journal, or its directory)."""
    journal = journal_path(path)
    reader = Reader(journal)
    trials: Dict[int, Trial] = {}
    header = fold(reader.read_new(), trials, None)
    if header is None and trials:
        raise JournalError(f"{journal} has no experiment declaration")
    now = time.time()
    for t in trials.values():
        if t.status == RUNNING and now - t._last_seen > t._lease:
            t.status = LOST
    return Results(journal, header, sorted(trials.values(), key=lambda t: t.id))


def best(path: str | os.PathLike[str], metric: Optional[str] = None,
         mode: Optional[str] = None) -> Optional[Trial]:
    """The best trial of the experiment at ``path`` by its last reported ``metric`` (by
    default the declared metric and mode)."""
    return results(path).best(metric, mode)
