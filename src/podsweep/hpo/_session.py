"""A process's part in an experiment: pick a trial, report on it, end it.

One :class:`Session` per process and experiment. All of its journal traffic goes through
:meth:`Session._transact`, which folds what other processes appended into the session's
:class:`~._ledger.Ledger` and appends the session's own events under the journal's lock.

Signals: the SIGTERM handler never takes a lock itself while the interrupted code may hold
one. If the main thread is inside a transaction it only records the signal, and the
transaction acts on it when it has released the lock.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

from ._errors import (
    InvalidArgument,
    NotInitialized,
    NoTrialsLeft,
    NoTrialsLeftInPod,
    SpaceMismatch,
)
from ._journal import Cursor, Event, Journal
from ._ledger import FORMAT, PLAIN_FORMAT, PRUNED, RUNNING, Holder, Ledger
from ._prune import Goal
from ._space import Space, Strategy

log = logging.getLogger("podsweep.hpo")

DEFAULT_LEASE_SECONDS = 60.0
"""A minute: many heartbeats (every lease/6) may be lost on a busy NFS server, and clocks of
hosts kept by NTP differ by far less, before a live trial could be taken for dead."""

JOURNAL_NAME = "hpo.jsonl"


@dataclass(frozen=True)
class Assignment:
    """The trial this process holds: what the training script needs to run or resume it."""

    id: int
    config: Dict[str, Any]
    attempt: int
    resumed: bool
    epoch: Optional[int]
    """The last epoch an earlier attempt reported, or None when the trial starts afresh."""
    dir: Path
    """The trial's own directory for checkpoints (created on first use by trial_dir())."""


def _clean_metrics(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(metrics, Mapping):
        raise InvalidArgument(f"metrics must be a dict of name -> number, got {metrics!r}")
    out: Dict[str, Any] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise InvalidArgument(f"metric names must be strings, got {name!r}")
        if isinstance(value, int):   # bool too: True is 1
            out[name] = int(value)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidArgument(f"metric {name!r} must be a number, got {value!r}") from None
        # JSON has no NaN or infinity; a diverged run reports null.
        out[name] = number if math.isfinite(number) else None
    return out


class Session:
    """One process's handle on one experiment (``<hpo_dir>/<experiment>/hpo.jsonl``)."""

    def __init__(self, hpo_dir: str | os.PathLike[str], experiment: str,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        if not experiment or "/" in experiment or experiment in (".", ".."):
            raise InvalidArgument(f"experiment must be a plain name, got {experiment!r}")
        if not (isinstance(lease_seconds, (int, float)) and lease_seconds > 0):
            raise InvalidArgument(f"lease_seconds must be a positive number, "
                                  f"got {lease_seconds!r}")
        self.hpo_dir = Path(hpo_dir)
        if not self.hpo_dir.is_dir():
            raise InvalidArgument(f"HPO directory {str(self.hpo_dir)!r} does not exist")
        self.experiment = experiment
        self.dir = self.hpo_dir / experiment
        self.dir.mkdir(exist_ok=True)
        self.path = self.dir / JOURNAL_NAME
        self.lease = float(lease_seconds)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.holder = Holder.from_env(os.environ)
        """The pod this process runs in (None outside a job): recorded with each trial."""
        self.current: Optional[Assignment] = None
        self._journal = Journal.open(self.path)
        self._cursor = Cursor()
        self._ledger = Ledger()
        self._pid = os.getpid()
        self._main_busy = 0
        self._pending_signal: Optional[int] = None
        self._terminating = False
        self._last_write = 0.0
        self._heartbeat: Optional[threading.Thread] = None
        self._space_cache: Optional[Tuple[Any, Space]] = None
        self._space_checked: Optional[Tuple[Space, Goal]] = None
        self._pruned: Optional[Tuple[int, int]] = None
        """(trial, attempt) of the held trial once a report of it was pruned."""
        self._stop = threading.Event()

    # ---------------------------------------------------------------- the journal

    def _transact(self, decide: Callable[[], List[Event]]) -> List[Event]:
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            self._main_busy += 1
        try:
            def fold_then_decide(new: List[Event]) -> List[Event]:
                for event in new:
                    self._ledger.apply(event)
                out = decide()
                for event in out:
                    self._ledger.apply(event)
                return out
            out = self._journal.transact(self._cursor, fold_then_decide)
            if out:
                self._last_write = time.monotonic()
            return out
        finally:
            if in_main:
                self._main_busy -= 1
                if not self._main_busy and self._pending_signal is not None:
                    signum, self._pending_signal = self._pending_signal, None
                    self.on_terminate(signum, None)

    def _event(self, kind: str, **fields: Any) -> Event:
        assert self.current is not None
        return {"event": kind, "trial": self.current.id, "attempt": self.current.attempt,
                **fields, "time": round(time.time(), 3)}

    # ---------------------------------------------------------------- the calls

    def pick(self, grid: Mapping[str, Any], strategy: Strategy = Strategy.GridSearch,
             seed: int = 0, *, metric: Optional[str] = None, mode: Optional[str] = None,
             pruner: Any = None, trials: Optional[int] = None) -> Dict[str, Any]:
        """Hand this process a trial: a taken-over, preempted or abandoned one first, else a
        fresh one.

        ``metric`` and ``mode`` name what TPE optimises and pruners judge (TPE and a pruner
        need them); ``pruner`` is None, "asha", "median" or an ASHA or Median object;
        ``trials`` bounds how many trials are handed out. All are part of the experiment's
        declaration, as the space is.

        In a pod, a running trial held by a dead pod of the same job and index (the one this
        pod replaces) comes first; outside a job, a trial whose holder died comes back once
        its lease has run out. A trial still held from an earlier pick() in this process is
        marked finished first. Nothing left raises :class:`NoTrialsLeft` (in a pod's main
        thread, a :class:`~._errors.NoTrialsLeftInPod`: uncaught, the pod exits 0).
        """
        self._check_process()
        space = self._space(grid, strategy, seed, trials)
        goal = Goal.build(metric, mode, pruner,
                          "Strategy.TPE" if space.strategy is Strategy.TPE else None)
        if self.current is not None:
            self.end("finished")
        chosen: Dict[str, Any] = {}

        def decide() -> List[Event]:
            ledger = self._ledger
            out: List[Event] = []
            if ledger.space is None:
                plain = space.trials is None and space.strategy is not Strategy.TPE \
                    and goal.metric is None
                header: Event = {"event": "experiment",
                                 "format": PLAIN_FORMAT if plain else FORMAT,
                                 "name": self.experiment, "strategy": space.strategy.value,
                                 "seed": space.seed, "space": space.spec(), "size": space.size}
                if not plain:
                    header.update(goal.header(), trials=space.trials)
                header["time"] = round(time.time(), 3)
                out.append(header)
                ledger.apply(header)
            elif self._space_checked != (space, goal) and not (
                    ledger.space.same_as(space) and ledger.goal == goal):
                raise SpaceMismatch(
                    f"experiment {self.experiment!r} was declared with "
                    f"{ledger.space.describe()}, {ledger.goal.describe()}; this pick() asks "
                    f"for {space.describe()}, {goal.describe()}. Use another experiment "
                    f"name for another search.")
            declared = ledger.space
            assert declared is not None
            self._space_checked = (space, goal)
            trial, reason = ledger.next_trial(time.time(), self.holder)
            if trial is None:
                raise self._nothing_left(declared.size)
            slot = ledger.slots.get(trial)
            attempt = 0 if slot is None else slot.attempt + 1
            config = ledger.config(trial)
            event: Event = {"event": "assign", "trial": trial, "attempt": attempt,
                            "worker": self.worker, "lease": self.lease, "config": config}
            if self.holder is not None:
                event["holder"] = self.holder.to_event()
            if reason:
                event["reclaimed"] = reason
            event["time"] = round(time.time(), 3)
            out.append(event)
            chosen.update(trial=trial, attempt=attempt, config=config, reason=reason,
                          epoch=None if slot is None else slot.epoch)
            return out

        self._transact(decide)
        self._pruned = None
        trial = int(chosen["trial"])
        self.current = Assignment(trial, chosen["config"], int(chosen["attempt"]),
                                  resumed=chosen["reason"] is not None, epoch=chosen["epoch"],
                                  dir=self.dir / "trials" / str(trial))
        if self.current.resumed:
            reached = (f", resuming after epoch {self.current.epoch}"
                       if self.current.epoch is not None else "")
            log.info("Picked preempted HPO experiment #%d (attempt %d%s)",
                     trial, self.current.attempt + 1, reached)
        else:
            log.info("Picked HPO experiment #%d", trial)
        log.info("Using configuration: %s", self.current.config)
        self._start_heartbeat()
        return dict(self.current.config)

    def _nothing_left(self, size: Optional[int]) -> NoTrialsLeft:
        """The error for a space handed out whole: in a pod's main thread, one that also
        ends the process with exit 0 if the script does not catch it (see _errors)."""
        counts = self._ledger.counts()
        running = counts.get(RUNNING, 0)
        pruned = f", {counts[PRUNED]} pruned" if counts.get(PRUNED) else ""
        what = ("trials" if self._ledger.space is not None
                and self._ledger.space.trials == size else "configurations")
        message = (f"all {size} {what} of experiment {self.experiment!r} have been "
                   f"handed out ({running} running, {counts.get('finished', 0)} finished, "
                   f"{counts.get('failed', 0)} failed{pruned}); a running trial whose "
                   f"process dies is handed out again to the rerun of its pod, or once its "
                   f"lease has run out")
        if self.holder is None or threading.current_thread() is not threading.main_thread():
            return NoTrialsLeft(message)
        return NoTrialsLeftInPod(
            message, f"No HPO experiment left to pick in {self.dir}: every configuration is "
                     f"handed out ({running} running); exiting 0")

    def _space(self, grid: Mapping[str, Any], strategy: Strategy, seed: int,
               trials: Optional[int]) -> Space:
        """The Space for pick()'s arguments, built and checked once while they stay equal.

        A sweep calls pick() with the same grid every time; validating it and comparing it
        with the declared one costs O(grid size), which must not be paid per call.
        """
        key = ({k: list(v) if isinstance(v, (list, tuple, range)) else v
                for k, v in grid.items()} if isinstance(grid, Mapping) else None,
               strategy, seed, trials)
        if self._space_cache is not None and self._space_cache[0] == key:
            return self._space_cache[1]
        space = Space.build(grid, strategy, seed, trials)
        self._space_cache = (key, space)
        return space

    def report(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Record the trial's metrics at ``epoch``; also renews the trial's lease."""
        self._check_process()
        if self.current is None:
            if self._terminating:
                return   # the trial was marked preempted; the script is on its way out
            raise NotInitialized("report() before pick(): this process holds no trial")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InvalidArgument(f"epoch must be a non-negative int, got {epoch!r}")
        event = self._event("report", epoch=epoch, metrics=_clean_metrics(metrics))
        current = self.current
        if self._pruned is not None:
            self._transact(lambda: [event])   # kept, as any report; judged no more
            return

        def decide() -> List[Event]:
            at = self._ledger.prune_at(current.id, current.attempt, epoch, event["metrics"])
            if at is None:
                return [event]
            return [event, self._event("pruned", epoch=epoch)]

        if len(self._transact(decide)) > 1:
            self._pruned = (current.id, current.attempt)
            log.info("HPO experiment #%d pruned at epoch %d (%s)", current.id, epoch,
                     self._ledger.goal.describe())

    def should_prune(self) -> bool:
        """Whether the held trial was pruned: its script should stop training it now.

        The pruner judged the trial's last report (:meth:`report` appended its decision
        with it); a pruned trial is already recorded as such, and exiting normally is all
        that is left to do.
        """
        self._check_process()
        if self.current is None:
            raise NotInitialized("should_prune() before pick(): this process holds no trial")
        return self._pruned == (self.current.id, self.current.attempt)

    def end(self, status: str, error: Optional[str] = None) -> None:
        """End the held trial as "finished", "failed" or "preempted" (no-op if none)."""
        if self.current is None or os.getpid() != self._pid:
            return
        if self._pruned == (self.current.id, self.current.attempt):
            self.current = None   # the pruned event ended it already
            return
        fields = {"error": error} if error is not None else {}
        event = self._event(status, **fields)
        self.current = None
        self._transact(lambda: [event])

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise NotInitialized("this podsweep.hpo session belongs to the parent process; "
                                 "call hpo.init() in this one")

    # ---------------------------------------------------------------- heartbeats

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._heartbeat = threading.Thread(target=self._beat, name="podsweep-hpo-lease",
                                               daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        interval = self.lease / 6
        while not self._stop.wait(max(0.01, interval - (time.monotonic() - self._last_write))):
            current = self.current
            if current is None or os.getpid() != self._pid:
                continue
            if time.monotonic() - self._last_write < interval:
                continue
            event = {"event": "heartbeat", "trial": current.id, "attempt": current.attempt,
                     "time": round(time.time(), 3)}
            try:
                self._transact(lambda beat=event: [beat])  # type: ignore[misc]
            except OSError as exc:   # e.g. NFS briefly away: the next beat tries again
                log.warning("podsweep.hpo: heartbeat failed: %s", exc)

    # ---------------------------------------------------------------- process hooks

    def on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        """SIGTERM handler: defer while the main thread is inside a transaction."""
        if self._main_busy and os.getpid() == self._pid:
            self._pending_signal = signum
            return
        self.on_terminate(signum, frame)

    def on_terminate(self, signum: int, frame: Optional[FrameType]) -> None:
        if not self._terminating and os.getpid() == self._pid:
            self._terminating = True
            self._stop.set()
            if self.current is not None:
                log.warning("HPO experiment #%d preempted (%s)", self.current.id,
                            signal.Signals(signum).name)
                self.end("preempted")
        chain_signal(signum, frame)

    def on_exception(self, kind: Type[BaseException], value: BaseException) -> None:
        if isinstance(value, KeyboardInterrupt):
            self.end("preempted")
        else:
            self.end("failed", error=f"{kind.__name__}: {value}")

    def on_exit(self) -> None:
        self._stop.set()
        self.end("finished")


_previous_handlers: Dict[int, Any] = {}


def chain_signal(signum: int, frame: Optional[FrameType]) -> None:
    """Do what the handler we replaced would have done: call it, or die of the signal."""
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_hooks(get_session: Callable[[], Optional[Session]]) -> None:
    """Mark the current session's trial on SIGTERM, on an uncaught exception and at exit.

    Installed once per process; each hook acts on whatever session is current then.
    """
    import atexit

    def on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
        session = get_session()
        if session is not None:
            session.on_signal(signum, frame)
        else:
            chain_signal(signum, frame)

    if threading.current_thread() is threading.main_thread():
        _previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_sigterm)
    else:
        log.debug("podsweep.hpo: init() outside the main thread; SIGTERM is not handled")

    previous_hook = sys.excepthook

    def excepthook(kind: Type[BaseException], value: BaseException,
                   tb: Optional[TracebackType]) -> None:
        session = get_session()
        if session is not None:
            session.on_exception(kind, value)
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook

    def at_exit() -> None:
        session = get_session()
        if session is not None:
            session.on_exit()

    atexit.register(at_exit)
