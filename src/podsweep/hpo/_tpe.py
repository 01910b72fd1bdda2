"""A tree-structured Parzen estimator, updated event by event from the journal.

TPE (Bergstra et al., 2011; as Optuna's TPESampler does it by default, jointly over the
parameters) ranks the trials that ended, takes the best ``k = min(ceil(n/10), 25)`` as good
and the rest as bad, fits a Parzen density to each (a kernel per trial over all parameters,
plus a broad prior), draws 24 candidates from the good density and hands out the one where
good over bad is highest. Until 10 trials have ended, trial n gets its random configuration.

What makes it fit a sweep of many pods:

- **Every process computes the same configuration.** The model is a fold of the journal
  (the ledger feeds it each trial's first ``assign`` and its end) and the draw is seeded by
  (seed, trial number): given the same journal, pick() hands out the same configuration.
- **Trials still running count as bad ones** (a constant liar): a pod that picks while
  others run is steered away from their configurations rather than onto them.
- **Pruned trials rank by how far they got**, then by their last value; finished trials
  rank above all of them (Optuna ranks pruned trials the same way).
- **A pick costs the same at 10 trials and at 10,000.** The ranking is a sorted list updated
  per event; the good density has at most ``GOOD_MAX`` kernels and the bad one the
  ``REST_MAX`` trials handed out last that are not good (Optuna weighs older trials down
  instead; a sweep of up to ``REST_MAX`` trials sees no difference). A pick evaluates at most
  ``(GOOD_MAX + REST_MAX + 2)`` kernels per candidate, whatever the history
  (:attr:`TPE.work` counts them, for the tests).
"""

from __future__ import annotations

import json
import math
import random
from bisect import insort
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ._space import LogUniform, RandInt, Space, Uniform

STARTUP_TRIALS = 10
CANDIDATES = 24
GOOD_MAX = 25
REST_MAX = 100

Key = Tuple[float, float, float, int]
"""A trial's rank, lower is better: (0, 0, -score, trial) finished, (1, -epoch, -score,
trial) pruned."""


def finished_key(trial: int, score: float) -> Key:
    return (0.0, 0.0, -score, trial)


def pruned_key(trial: int, epoch: int, score: float) -> Key:
    return (1.0, -float(epoch), -score, trial)


_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


class _Numeric:
    """uniform, loguniform or randint, mapped onto [0, 1]."""

    def __init__(self, dim: Union[Uniform, LogUniform, RandInt]) -> None:
        self.dim = dim
        if isinstance(dim, LogUniform):
            self.low, self.high = math.log(dim.low), math.log(dim.high)
        else:
            self.low, self.high = float(dim.low), float(dim.high)

    def to_unit(self, value: Any) -> Optional[float]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        dim = self.dim
        if isinstance(dim, RandInt):
            if not dim.low <= value <= dim.high:
                return None
            return (value - dim.low + 0.5) / len(dim)
        if isinstance(dim, LogUniform):
            if value <= 0:
                return None
            value = math.log(value)
        u = (value - self.low) / (self.high - self.low)
        return u if 0.0 <= u <= 1.0 else None

    def from_unit(self, u: float) -> Tuple[Any, float]:
        """The parameter's value at ``u``, and the point of [0, 1] that value stands for."""
        dim = self.dim
        if isinstance(dim, RandInt):
            k = min(int(u * len(dim)), len(dim) - 1)
            return dim.low + k, (k + 0.5) / len(dim)
        value = self.low + u * (self.high - self.low)
        if isinstance(dim, LogUniform):
            value = math.exp(value)
        return min(max(value, dim.low), dim.high), u


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class _Choice:
    """A list of values: a categorical parameter."""

    def __init__(self, values: Tuple[Any, ...]) -> None:
        self.values = values
        self.index = {_canon(v): k for k, v in reversed(list(enumerate(values)))}

    def to_cell(self, value: Any) -> Optional[int]:
        return self.index.get(_canon(value))


Param = Union[_Numeric, _Choice]
Point = Tuple[float, ...]
"""A configuration as TPE sees it: per parameter, a place in [0, 1] or a choice's index."""


def _bandwidths(mus: Sequence[float], kernels: int) -> List[float]:
    """Each kernel as wide as the larger gap to its neighbours (the outermost ones: to their
    one inner neighbour; the range's ends count only for fewer than two points), between
    1/min(100, kernels + 1) and the range: Optuna's rule, magic clip included."""
    order = sorted(range(len(mus)), key=lambda i: mus[i])
    ends = [0.0, *(mus[i] for i in order), 1.0]
    gaps = [max(ends[j + 1] - ends[j], ends[j + 2] - ends[j + 1]) for j in range(len(order))]
    if len(ends) >= 4:
        gaps[0], gaps[-1] = ends[2] - ends[1], ends[-2] - ends[-3]
    floor = 1.0 / min(100, kernels + 1)
    sigmas = [0.0] * len(mus)
    for j, i in enumerate(order):
        sigmas[i] = min(1.0, max(floor, gaps[j]))
    return sigmas


class _Parzen:
    """A density over whole configurations: a kernel per point and a prior, weighed alike.

    Per numeric parameter a kernel is a Gaussian truncated to [0, 1]; per list, a point's
    kernel puts weight 1 + 1/K on its own choice and 1/K on every choice (K kernels),
    normalised; the prior is the range's centre with the range as its width, and uniform
    over a list's choices.
    """

    def __init__(self, params: Sequence[Param], points: Sequence[Point]) -> None:
        self.params = params
        self.points = points
        self.kernels = len(points) + 1
        self.log_weight = -math.log(self.kernels)
        self.sigmas: List[List[float]] = []
        self.log_scale: List[List[float]] = []
        self.choice_logs: List[Tuple[float, float, float]] = []
        for d, param in enumerate(params):
            if isinstance(param, _Choice):
                size, k = len(param.values), self.kernels
                norm = 1.0 + size / k
                self.choice_logs.append((math.log((1.0 + 1.0 / k) / norm),
                                         math.log((1.0 / k) / norm), -math.log(size)))
                self.sigmas.append([])
                self.log_scale.append([])
                continue
            self.choice_logs.append((0.0, 0.0, 0.0))
            mus = [p[d] for p in points]
            sigmas = [*_bandwidths(mus, self.kernels), 1.0]
            mus.append(0.5)
            self.sigmas.append(sigmas)
            # log(1 / (sigma * sqrt(2 pi) * the kernel's mass inside [0, 1])), once
            self.log_scale.append([
                -math.log(s) - _LOG_SQRT_2PI
                - math.log(max(1e-300, _cdf((1 - m) / s) - _cdf(-m / s)))
                for m, s in zip(mus, sigmas)])

    def sample(self, rng: random.Random) -> List[float]:
        """A raw point of [0, 1] per numeric parameter, an index per list."""
        i = rng.randrange(self.kernels)
        prior = i == len(self.points)
        out: List[float] = []
        for d, param in enumerate(self.params):
            if isinstance(param, _Choice):
                size = len(param.values)
                if prior:
                    out.append(float(rng.randrange(size)))
                    continue
                own, other, _ = self.choice_logs[d]
                weights = [math.exp(other)] * size
                weights[int(self.points[i][d])] = math.exp(own)
                out.append(float(rng.choices(range(size), weights)[0]))
                continue
            mu = 0.5 if prior else self.points[i][d]
            sigma = self.sigmas[d][i]
            for _ in range(32):
                u = rng.gauss(mu, sigma)
                if 0.0 <= u <= 1.0:
                    break
            else:
                u = rng.random()
            out.append(u)
        return out

    def log_pdf(self, x: Sequence[float]) -> float:
        terms = []
        n = len(self.points)
        for i in range(self.kernels):
            total = self.log_weight
            for d, param in enumerate(self.params):
                if isinstance(param, _Choice):
                    own, other, flat = self.choice_logs[d]
                    total += flat if i == n else (own if self.points[i][d] == x[d] else other)
                else:
                    mu = 0.5 if i == n else self.points[i][d]
                    z = (x[d] - mu) / self.sigmas[d][i]
                    total += self.log_scale[d][i] - 0.5 * z * z
            terms.append(total)
        top = max(terms)
        return top + math.log(sum(math.exp(t - top) for t in terms))


class TPE:
    """The model of one experiment: feed it trials as they are handed out and end."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.params: List[Param] = [
            _Choice(dim) if isinstance(dim, tuple) else _Numeric(dim)
            for _, dim in space.params]
        self.names = [name for name, _ in space.params]
        self.points: Dict[int, Point] = {}
        """Each counted trial's point, in the order the trials were first handed out."""
        self.ranked: List[Tuple[Key, int]] = []
        self.work = 0
        """Kernel evaluations in the last suggest(): its cost, whatever the history."""

    # ---------------------------------------------------------------- the fold

    def assigned(self, trial: int, config: Any) -> None:
        """A trial handed out (its first assign): it counts as a bad one until it ends."""
        if trial in self.points or not isinstance(config, dict):
            return
        point: List[float] = []
        for name, param in zip(self.names, self.params):
            value = config.get(name)
            cell = (param.to_cell(value) if isinstance(param, _Choice)
                    else param.to_unit(value))
            if cell is None:
                return   # not a point of this space (a hand-edited journal): left out
            point.append(float(cell))
        self.points[trial] = tuple(point)

    def observed(self, trial: int, key: Key) -> None:
        """The trial ended with a result (finished, or pruned): rank it."""
        if trial in self.points:
            insort(self.ranked, (key, trial))

    def discarded(self, trial: int) -> None:
        """The trial ended without a result (failed, or never reported the metric)."""
        self.points.pop(trial, None)

    # ---------------------------------------------------------------- a pick

    @property
    def ready(self) -> bool:
        return len(self.ranked) >= STARTUP_TRIALS

    def suggest(self, trial: int) -> Dict[str, Any]:
        """Trial ``trial``'s configuration: random until the model is ready."""
        if not self.ready:
            return self.space.config(trial)
        rng = random.Random(f"podsweep.hpo.tpe:{self.space.seed}:{trial}")
        k = min(math.ceil(0.1 * len(self.ranked)), GOOD_MAX)
        good_ids = [t for _, t in self.ranked[:k]]
        chosen = set(good_ids)
        rest: List[Point] = []
        for t in reversed(self.points):     # the latest first: pending ones among them
            if len(rest) == REST_MAX:
                break
            if t not in chosen:
                rest.append(self.points[t])
        good = _Parzen(self.params, [self.points[t] for t in good_ids])
        bad = _Parzen(self.params, rest)
        self.work = 0
        best: Optional[Tuple[float, List[Any]]] = None
        for _ in range(CANDIDATES):
            raw = good.sample(rng)
            values: List[Any] = []
            x: List[float] = []
            for u, param in zip(raw, self.params):
                if isinstance(param, _Choice):
                    values.append(param.values[int(u)])
                    x.append(u)
                else:
                    value, at = param.from_unit(u)
                    values.append(value)
                    x.append(at)
            score = good.log_pdf(x) - bad.log_pdf(x)
            self.work += (good.kernels + bad.kernels) * len(self.params)
            if best is None or score > best[0]:
                best = (score, values)
        assert best is not None
        return dict(zip(self.names, best[1]))
