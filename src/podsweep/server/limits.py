"""How many logins the control plane evaluates: per name, per client address, in flight.

A login costs a scrypt hash (tens of milliseconds of a CPU and 16 MiB, by design), and each
one evaluated is a guess at a password. So a login is *reserved* before it is hashed, and
refused with :class:`~podsweep.errors.TooManyRequests` (HTTP 429, ``Retry-After``) when

- the name has ``per_name`` attempts that failed within the last ``window`` seconds or are
  still being evaluated, or
- the client address has ``per_client`` such attempts, or
- ``in_flight`` logins are being evaluated on the whole control plane.

Counting the attempts still in flight is the point: 40 guesses sent at once against one
name all arrive before the first is answered, and only ``per_name`` of them are hashed.
A login that succeeds gives its own slot back and nothing else: it does not clear failures
that another client (or an earlier mistyped password) left, so an attacker's budget never
refills because the real user logged in. Failures are forgotten ``window`` seconds after
they happened (a sliding window).

The control plane listens on 127.0.0.1, so every local client has the same address and
``per_client`` is a ceiling on failed logins for the whole machine: a flood of guesses
locks everyone out of *logging in* for at most ``window`` seconds, never out of the API
(tokens) or of existing browser sessions.

The limits are set where the app is made (:meth:`LoginLimiter.from_env`):
``PODSWEEP_LOGIN_WINDOW`` (seconds, default 60), ``PODSWEEP_LOGIN_PER_NAME`` (5),
``PODSWEEP_LOGIN_PER_CLIENT`` (20), ``PODSWEEP_LOGIN_IN_FLIGHT`` (16).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from ..errors import TooManyRequests, UsageError

KEY_MAX = 128          # longer names are counted under their first 128 characters
FORGET_AT = 10_000     # budgets kept before the idle ones are dropped


@dataclass
class _Budget:
    failures: deque[float] = field(default_factory=deque)   # times, oldest first
    in_flight: int = 0

    def used(self, now: float, window: float) -> int:
        while self.failures and now - self.failures[0] >= window:
            self.failures.popleft()
        return len(self.failures) + self.in_flight


class Attempt:
    """One reserved login. Say how it ended with :meth:`succeeded`; one that leaves its
    ``with`` block without saying so (a wrong password, an exception, a cancelled request)
    counts as a failure."""

    def __init__(self, limiter: LoginLimiter, budgets: tuple[_Budget, ...]) -> None:
        self._limiter = limiter
        self._budgets = budgets
        self._ok = False

    def succeeded(self) -> None:
        self._ok = True

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._limiter._finish(self._budgets, self._ok)


class LoginLimiter:
    """The budgets of logins; single-threaded (the event loop's), like the rest of the app."""

    def __init__(self, *, per_name: int = 5, per_client: int = 20, in_flight: int = 16,
                 window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_name, self.per_client, self.max_in_flight = per_name, per_client, in_flight
        self.window = window
        self._clock = clock
        self._names: dict[str, _Budget] = {}
        self._clients: dict[str, _Budget] = {}
        self._in_flight = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LoginLimiter:
        def number(key: str, default: float, minimum: float) -> float:
            text = environ.get(key)
            if text is None or text == "":
                return default
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < minimum:
                raise UsageError(f"{key} must be a number of at least {minimum:g}, "
                                 f"got {text!r}")
            return value

        return cls(per_name=int(number("PODSWEEP_LOGIN_PER_NAME", 5, 1)),
                   per_client=int(number("PODSWEEP_LOGIN_PER_CLIENT", 20, 1)),
                   in_flight=int(number("PODSWEEP_LOGIN_IN_FLIGHT", 16, 1)),
                   window=number("PODSWEEP_LOGIN_WINDOW", 60.0, 0.001))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reserve(self, name: str, client: str) -> Attempt:
        """A slot for one login of ``name`` from ``client``, or TooManyRequests."""
        now = self._clock()
        if len(self._names) + len(self._clients) > FORGET_AT:
            self._forget_idle(now)
        if self._in_flight >= self.max_in_flight:
            raise TooManyRequests("too many logins in progress; try again in 1 s",
                                  retry_after=1)
        by_name = self._names.setdefault(name[:KEY_MAX], _Budget())
        by_client = self._clients.setdefault(client, _Budget())
        for budget, limit, whose in ((by_name, self.per_name, f"user {name[:KEY_MAX]!r}"),
                                     (by_client, self.per_client, "this address")):
            if budget.used(now, self.window) >= limit:
                wait = self._retry_after(budget, now)
                raise TooManyRequests(f"too many login attempts for {whose}; try again "
                                      f"in {wait} s", retry_after=wait)
        for budget in (by_name, by_client):
            budget.in_flight += 1
        self._in_flight += 1
        return Attempt(self, (by_name, by_client))

    def _finish(self, budgets: tuple[_Budget, ...], ok: bool) -> None:
        now = self._clock()
        self._in_flight -= 1
        for budget in budgets:
            budget.in_flight -= 1
            if not ok:
                budget.failures.append(now)

    def _retry_after(self, budget: _Budget, now: float) -> int:
        """Whole seconds until the oldest failure leaves the window; 1 while only
        attempts in flight fill the budget (they end within a second or so)."""
        if not budget.failures:
            return 1
        return max(1, math.ceil(budget.failures[0] + self.window - now))

    def _forget_idle(self, now: float) -> None:
        for table in (self._names, self._clients):
            for key in [k for k, b in table.items() if not b.in_flight
                        and not b.used(now, self.window)]:
                del table[key]
