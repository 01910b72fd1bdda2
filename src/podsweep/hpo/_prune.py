"""What a sweep optimises, and the pruners that stop its weak trials early.

A pruner's decision is a pure function of the journal up to the report it is about: every
process folds the same events in the same order into the same tables, and the process that
appends a report decides, under the journal's lock, whether that report ends its trial. A
decision to prune is appended with the report as a ``pruned`` event, which ends the trial
for every reader; a decision to go on needs no record, since the report that reached the
rung is itself recorded in the rung (a resumed attempt that reports the rung's epoch again
finds its trial there and is not judged twice).

Scores are the metric turned so that higher is better (negated for ``mode="min"``); a
diverged run (a null value) scores minus infinity.

- :class:`ASHA` — asynchronous successive halving (Li et al., 2020): rungs at epochs
  ``min_epoch * reduction_factor**k``; a trial reaching a rung goes on only if its value is
  among the top ``1/reduction_factor`` of the values recorded at that rung so far, itself
  included. While fewer than ``reduction_factor`` trials have reached the rung, that means
  the best so far (as Optuna's SuccessiveHalvingPruner does: a trial cannot wait here for
  others to reach the rung, so an early trial goes on only if it leads).
- :class:`Median` — the median stopping rule (Golovin et al., 2017): after ``warmup_epochs``,
  a trial whose best value so far is worse than the median of finished trials' values at
  the same epoch is pruned, once ``min_trials`` finished trials reported that epoch.

Each table costs O(log n) per report and O(epochs · log n) per finished trial: a decision
does not grow with the length of the journal.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from ._errors import InvalidArgument

MAX, MIN = "max", "min"


def default_mode(metric: str) -> str:
    """``min`` for names that read as a loss or an error, else ``max``."""
    lowered = metric.lower()
    return MIN if any(w in lowered for w in ("loss", "error", "err", "mse", "mae")) else MAX


def _count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidArgument(f"{name} must be an int of at least {least}, got {value!r}")
    return value


@dataclass(frozen=True)
class ASHA:
    """Asynchronous successive halving: go on at a rung only among the top 1/factor."""

    min_epoch: int = 1
    reduction_factor: int = 4
    """Rungs at min_epoch * reduction_factor**k, keeping the top 1/reduction_factor at each:
    4 as in Ray Tune's ASHAScheduler and Optuna's SuccessiveHalvingPruner (measured against 3
    in docs/benchmarks.md: fewer epochs, at times a little less accuracy)."""
    min_trials: int = 1
    """Prune at a rung only once this many trials (this one included) have reached it."""

    def __post_init__(self) -> None:
        _count("ASHA min_epoch", self.min_epoch, 1)
        _count("ASHA reduction_factor", self.reduction_factor, 2)
        _count("ASHA min_trials", self.min_trials, 1)

    def spec(self) -> Dict[str, Any]:
        return {"name": "asha", "min_epoch": self.min_epoch,
                "reduction_factor": self.reduction_factor, "min_trials": self.min_trials}

    def rung_epoch(self, rung: int) -> int:
        return int(self.min_epoch * self.reduction_factor ** rung)


@dataclass(frozen=True)
class Median:
    """The median stopping rule: prune a trial worse than finished trials' median."""

    warmup_epochs: int = 0
    """Never prune at an epoch below this."""
    min_trials: int = 5
    """Prune at an epoch only once this many finished trials have reported it."""

    def __post_init__(self) -> None:
        _count("Median warmup_epochs", self.warmup_epochs, 0)
        _count("Median min_trials", self.min_trials, 1)

    def spec(self) -> Dict[str, Any]:
        return {"name": "median", "warmup_epochs": self.warmup_epochs,
                "min_trials": self.min_trials}


Pruner = Union[ASHA, Median]
PRUNERS = {"asha": ASHA, "median": Median}


def pruner_from(value: Any) -> Optional[Pruner]:
    """pick()'s ``pruner``: None, "asha", "median", or an ASHA or Median object."""
    if value is None:
        return None
    if isinstance(value, (ASHA, Median)):
        return value
    if isinstance(value, str) and value.lower() in PRUNERS:
        made: Pruner = PRUNERS[value.lower()]()
        return made
    raise InvalidArgument(f"pruner must be None, 'asha', 'median', hpo.ASHA(...) or "
                          f"hpo.Median(...), got {value!r}")


def pruner_from_spec(spec: Any) -> Optional[Pruner]:
    """The pruner a journal's header declares (None if none)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or spec.get("name") not in PRUNERS:
        raise ValueError(f"unknown pruner {spec!r}")
    options = {k: v for k, v in spec.items() if k != "name"}
    made: Pruner = PRUNERS[str(spec["name"])](**options)
    return made


@dataclass(frozen=True)
class Goal:
    """What the sweep optimises and how it prunes: part of the experiment's declaration."""

    metric: Optional[str] = None
    mode: Optional[str] = None
    pruner: Optional[Pruner] = None

    @classmethod
    def build(cls, metric: Optional[str], mode: Optional[str], pruner: Any,
              needed_by: Optional[str]) -> Goal:
        """pick()'s arguments, checked; ``needed_by`` names what needs a metric, if any."""
        chosen = pruner_from(pruner)
        if metric is None:
            if mode is not None:
                raise InvalidArgument("mode= needs metric=, the metric it applies to")
            what = needed_by or ("a pruner" if chosen is not None else None)
            if what is not None:
                raise InvalidArgument(f"{what} needs metric=, the name of the reported "
                                      f"metric to optimise (and mode='max' or 'min')")
            return cls()
        if not isinstance(metric, str) or not metric:
            raise InvalidArgument(f"metric must be a metric's name, got {metric!r}")
        if mode is None:
            mode = default_mode(metric)
        if mode not in (MAX, MIN):
            raise InvalidArgument(f"mode must be 'max' or 'min', got {mode!r}")
        return cls(metric, mode, chosen)

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> Goal:
        metric, mode = header.get("metric"), header.get("mode")
        if metric is not None and not isinstance(metric, str):
            raise ValueError(f"bad metric {metric!r}")
        if mode not in (None, MAX, MIN):
            raise ValueError(f"bad mode {mode!r}")
        return cls(metric, mode, pruner_from_spec(header.get("pruner")))

    def header(self) -> Dict[str, Any]:
        """The header's fields; none for a goal-less sweep (format 1 stays as it was)."""
        if self.metric is None:
            return {}
        return {"metric": self.metric, "mode": self.mode,
                "pruner": None if self.pruner is None else self.pruner.spec()}

    def describe(self) -> str:
        if self.metric is None:
            return "no metric"
        pruner = "no pruner" if self.pruner is None else f"pruner {self.pruner.spec()}"
        return f"{self.mode} {self.metric!r}, {pruner}"

    def score(self, metrics: Any) -> Optional[float]:
        """The report's value of the metric, higher-is-better; None if it is not there."""
        if self.metric is None or not isinstance(metrics, Mapping) \
                or self.metric not in metrics:
            return None
        value = metrics[self.metric]
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            return -math.inf
        return float(value) if self.mode == MAX else -float(value)


class ASHATable:
    """The values recorded at each rung, sorted; the highest rung each trial reached."""

    def __init__(self, pruner: ASHA) -> None:
        self.pruner = pruner
        self.rungs: List[List[float]] = []
        self.reached: Dict[int, int] = {}

    def _new_rungs(self, trial: int, epoch: int) -> range:
        first = self.reached.get(trial, -1) + 1
        last = first
        while self.pruner.rung_epoch(last) <= epoch:
            last += 1
        return range(first, last)

    def decide(self, trial: int, epoch: int, score: float) -> Optional[int]:
        """The rung at which this report ends the trial, or None if it goes on."""
        factor, least = self.pruner.reduction_factor, self.pruner.min_trials
        for rung in self._new_rungs(trial, epoch):
            values = self.rungs[rung] if rung < len(self.rungs) else []
            reached = len(values) + 1
            if reached < least:
                continue
            better = len(values) - bisect_right(values, score)
            if better >= max(reached // factor, 1):
                return rung
        return None

    def record(self, trial: int, epoch: int, score: float) -> None:
        for rung in self._new_rungs(trial, epoch):
            while len(self.rungs) <= rung:
                self.rungs.append([])
            insort(self.rungs[rung], score)
            self.reached[trial] = rung

    def ended(self, trial: int, finished: bool) -> None:
        self.reached.pop(trial, None)


class MedianTable:
    """Finished trials' values by epoch, sorted; running trials' values and best so far."""

    def __init__(self, pruner: Median) -> None:
        self.pruner = pruner
        self.by_epoch: Dict[int, List[float]] = {}
        self.running: Dict[int, Dict[int, float]] = {}
        self.best: Dict[int, float] = {}

    def decide(self, trial: int, epoch: int, score: float) -> Optional[int]:
        if epoch < self.pruner.warmup_epochs:
            return None
        values = self.by_epoch.get(epoch, ())
        n = len(values)
        if n < self.pruner.min_trials:
            return None
        median = (values[(n - 1) // 2] + values[n // 2]) / 2
        best = max(score, self.best.get(trial, -math.inf))
        return epoch if best < median else None

    def record(self, trial: int, epoch: int, score: float) -> None:
        self.running.setdefault(trial, {})[epoch] = score
        self.best[trial] = max(score, self.best.get(trial, -math.inf))

    def ended(self, trial: int, finished: bool) -> None:
        scores = self.running.pop(trial, {})
        self.best.pop(trial, None)
        if finished:
            for epoch, score in scores.items():
                insort(self.by_epoch.setdefault(epoch, []), score)


Table = Union[ASHATable, MedianTable]


def table_for(pruner: Optional[Pruner]) -> Optional[Table]:
    if isinstance(pruner, ASHA):
        return ASHATable(pruner)
    if isinstance(pruner, Median):
        return MedianTable(pruner)
    return None
