"""Search spaces: what pick() may hand out, and trial n's configuration.

A space is a mapping of parameter names to either a list of values or a distribution
(:func:`uniform`, :func:`loguniform`, :func:`randint`). Trial ``n`` (1-based) gets a
configuration that is a pure function of the declared space, its seed and ``n``, so every
process computes it alone: the journal records only which trial went to whom.

- Grid: trial n is the (n-1)-th point of ``itertools.product`` over the lists, in the order
  the parameters were given.
- Random: the finite part (lists, randint) is walked in a seeded pseudo-random permutation,
  so no combination repeats while unseen ones remain; the continuous part (uniform,
  loguniform) is drawn from a generator seeded by (seed, n). A space with no continuous
  part is exhausted after every combination was handed out once.
- TPE: configurations follow from what earlier trials scored (``_tpe``), so the journal's
  ``assign`` records are where they are kept; until enough trials have ended, TPE hands out
  trial n's random configuration.

``trials`` (if given) bounds how many trials any strategy hands out.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ._errors import InvalidSpace


class Strategy(enum.Enum):
    """How pick() walks the space."""

    GridSearch = "grid"
    RandomSearch = "random"
    TPE = "tpe"
    """A tree-structured Parzen estimator (Bergstra et al., 2011): trial n's configuration
    is drawn where the best trials so far are dense and the others are not."""


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def spec(self) -> Dict[str, Any]:
        return {"dist": "uniform", "low": self.low, "high": self.high}

    def sample(self, rng: random.Random) -> float:
        return self.low + (self.high - self.low) * rng.random()


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def spec(self) -> Dict[str, Any]:
        return {"dist": "loguniform", "low": self.low, "high": self.high}

    def sample(self, rng: random.Random) -> float:
        lo, hi = math.log(self.low), math.log(self.high)
        return math.exp(lo + (hi - lo) * rng.random())


@dataclass(frozen=True)
class RandInt:
    """Integers from low to high, both included (as ``random.randint``)."""

    low: int
    high: int

    def spec(self) -> Dict[str, Any]:
        return {"dist": "randint", "low": self.low, "high": self.high}

    def __len__(self) -> int:
        return self.high - self.low + 1

    def __getitem__(self, k: int) -> int:
        return self.low + k


Continuous = Union[Uniform, LogUniform]
Dimension = Union[Tuple[Any, ...], Uniform, LogUniform, RandInt]


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidSpace(f"{name} must be a finite number, got {value!r}")
    return float(value)


def uniform(low: float, high: float) -> Uniform:
    """A float drawn uniformly from [low, high) (random search and TPE)."""
    lo, hi = _number("low", low), _number("high", high)
    if not lo < hi:
        raise InvalidSpace(f"uniform({low!r}, {high!r}): low must be below high")
    return Uniform(lo, hi)


def loguniform(low: float, high: float) -> LogUniform:
    """A float whose logarithm is uniform in [log(low), log(high)) (random search and TPE)."""
    lo, hi = _number("low", low), _number("high", high)
    if not 0 < lo < hi:
        raise InvalidSpace(f"loguniform({low!r}, {high!r}): need 0 < low < high")
    return LogUniform(lo, hi)


def randint(low: int, high: int) -> RandInt:
    """An integer from low to high, both included (random search and TPE)."""
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidSpace(f"randint {name} must be an int, got {v!r}")
    if low > high:
        raise InvalidSpace(f"randint({low}, {high}): low must not exceed high")
    return RandInt(low, high)


def _dimension_from_spec(name: str, spec: Any) -> Dimension:
    if isinstance(spec, list):
        return tuple(spec)
    if isinstance(spec, dict):
        kind = spec.get("dist")
        if kind == "uniform":
            return Uniform(float(spec["low"]), float(spec["high"]))
        if kind == "loguniform":
            return LogUniform(float(spec["low"]), float(spec["high"]))
        if kind == "randint":
            return RandInt(int(spec["low"]), int(spec["high"]))
    raise InvalidSpace(f"parameter {name!r}: unknown dimension {spec!r}")


def _dimension_spec(dim: Dimension) -> Any:
    return list(dim) if isinstance(dim, tuple) else dim.spec()


def _feistel_permute(key: str, index: int, size: int) -> int:
    """Map index in [0, size) to a pseudo-random position in [0, size), bijectively.

    A 4-round Feistel network over the smallest even number of bits that holds ``size``,
    walked until the result falls inside [0, size): a permutation of any size, computed in
    O(1) per index with no table.
    """
    if size <= 1:
        return 0
    half = max(1, ((size - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    x = index
    while True:
        left, right = x >> half, x & mask
        for r in range(4):
            digest = hashlib.blake2b(f"{key}:{r}:{right}".encode(), digest_size=8).digest()
            left, right = right, left ^ (int.from_bytes(digest, "big") & mask)
        x = (left << half) | right
        if x < size:
            return x


@dataclass(frozen=True)
class Space:
    """A declared search space: parameters in order, the strategy and the seed."""

    strategy: Strategy
    params: Tuple[Tuple[str, Dimension], ...]
    seed: int = 0
    trials: Optional[int] = None
    """At most this many trials are handed out (None: as many as the space holds)."""

    @classmethod
    def build(cls, grid: Mapping[str, Any], strategy: Strategy, seed: int = 0,
              trials: Optional[int] = None) -> Space:
        if not isinstance(strategy, Strategy):
            raise InvalidSpace(f"strategy must be hpo.Strategy.GridSearch, RandomSearch or "
                               f"TPE, got {strategy!r}")
        if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int)
                                   or trials < 1):
            raise InvalidSpace(f"trials must be a positive int or None, got {trials!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidSpace(f"seed must be an int, got {seed!r}")
        if not isinstance(grid, Mapping) or not grid:
            raise InvalidSpace("grid must be a non-empty dict of parameter -> values")
        params: List[Tuple[str, Dimension]] = []
        for name, values in grid.items():
            if not isinstance(name, str):
                raise InvalidSpace(f"parameter names must be strings, got {name!r}")
            dim: Dimension
            if isinstance(values, (Uniform, LogUniform, RandInt)):
                if strategy is Strategy.GridSearch:
                    raise InvalidSpace(f"parameter {name!r}: grid search needs a list of "
                                       f"values, not a distribution")
                dim = values
            elif isinstance(values, (list, tuple, range)):
                dim = tuple(values)
                if not dim:
                    raise InvalidSpace(f"parameter {name!r} has no values")
                try:
                    dim = tuple(json.loads(json.dumps(list(dim), allow_nan=False)))
                except (TypeError, ValueError) as exc:
                    raise InvalidSpace(f"parameter {name!r}: values must be JSON values "
                                       f"(str, int, float, bool, None, lists): {exc}") from None
            else:
                raise InvalidSpace(f"parameter {name!r}: expected a list of values or a "
                                   f"distribution, got {type(values).__name__}")
            params.append((name, dim))
        return cls(strategy, tuple(params), int(seed), trials)

    @classmethod
    def from_spec(cls, strategy: str, space: Mapping[str, Any], seed: int,
                  trials: Optional[int] = None) -> Space:
        return cls(Strategy(strategy),
                   tuple((k, _dimension_from_spec(k, v)) for k, v in space.items()), seed,
                   None if trials is None else int(trials))

    def spec(self) -> Dict[str, Any]:
        return {name: _dimension_spec(dim) for name, dim in self.params}

    def same_as(self, other: Space) -> bool:
        """Equal as declared: same strategy, seed and parameters (in any key order)."""
        def canon(s: Space) -> str:
            return json.dumps(s.spec(), sort_keys=True)
        return (self.strategy is other.strategy and self.seed == other.seed
                and self.trials == other.trials and canon(self) == canon(other))

    def describe(self) -> str:
        bound = "" if self.trials is None else f", {self.trials} trials"
        return f"{self.strategy.name} over {self.spec()} (seed {self.seed}{bound})"

    @property
    def _finite(self) -> List[Tuple[str, Union[Tuple[Any, ...], RandInt]]]:
        return [(n, d) for n, d in self.params if isinstance(d, (tuple, RandInt))]

    @property
    def _combinations(self) -> int:
        return math.prod(len(d) for _, d in self._finite)

    @property
    def size(self) -> Optional[int]:
        """How many trials may be handed out; None when there is no end.

        Grid and random search hand out each combination of a finite space once; TPE may
        come back to a point, so only ``trials`` bounds it.
        """
        if self.strategy is Strategy.TPE or len(self._finite) < len(self.params):
            return self.trials
        if self.trials is None:
            return self._combinations
        return min(self.trials, self._combinations)

    def config(self, trial: int) -> Dict[str, Any]:
        """Trial ``trial``'s configuration (trials are numbered from 1)."""
        index = trial - 1
        finite = self._finite
        combos = self._combinations
        if self.strategy is Strategy.GridSearch:
            position = index
        else:
            rounds = index // combos
            position = _feistel_permute(f"{self.seed}:{rounds}", index % combos, combos)
        chosen: Dict[str, Any] = {}
        for name, dim in reversed(finite):   # the last parameter varies fastest
            position, k = divmod(position, len(dim))
            chosen[name] = dim[k]
        rng = random.Random(f"podsweep.hpo:{self.seed}:{trial}")
        config: Dict[str, Any] = {}
        for name, dim in self.params:
            config[name] = chosen[name] if name in chosen else _sample(dim, rng)
        return config


def _sample(dim: Dimension, rng: random.Random) -> Any:
    assert isinstance(dim, (Uniform, LogUniform))
    return dim.sample(rng)

