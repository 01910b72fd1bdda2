"""The journal's format, and the fold of its events that a picking process keeps.

Format 1 — one JSON object per line, in the order the lock granted them::

    {"event":"experiment","format":1,"name":"hpo1-5f2c","strategy":"grid","seed":0,
     "space":{"batch_size":[32,64,128],"lr":[1,0.1,0.01,0.001]},"size":12,"time":…}
    {"event":"assign","trial":4,"attempt":0,"worker":"host:1234","lease":60,
     "config":{"batch_size":32,"lr":0.001},
     "holder":{"job":"5f2c","pod":"hpo1-4-0","index":4},"time":…}
                                 # "reclaimed": "preempted" | "lease" | "holder-gone"
    {"event":"heartbeat","trial":4,"attempt":0,"time":…}
    {"event":"report","trial":4,"attempt":0,"epoch":5,"metrics":{"accuracy":0.87},"time":…}
    {"event":"preempted","trial":4,"attempt":0,"time":…}
    {"event":"finished","trial":4,"attempt":0,"time":…}
    {"event":"failed","trial":4,"attempt":0,"error":"ValueError: …","time":…}

The first line declares the experiment; trials are numbered from 1 and their configuration
follows from the declared space (``_space.Space.config``), recorded in ``assign`` for
readers. An event of an attempt that is no longer the trial's latest changes nothing but
its own record (a report still counts). Unknown events are skipped, so a newer writer may
add some; a newer ``format`` is refused.

``holder`` names the pod that holds the trial (``PODSWEEP_JOB_UID``, ``PODSWEEP_POD_NAME``
and ``PODSWEEP_POD_INDEX`` or ``JOB_COMPLETION_INDEX``); it is there only when the process
runs in a pod of a job. An engine never runs two pods of one index of a job at once, so a
pod of the same job and index with another name proves the holder dead: its pick() takes
the trial over at once, recorded as ``"reclaimed": "holder-gone"``. Both were added to
format 1 without changing its number: a reader that does not know them ignores the field
and the value (it reads the assign as any reclaim, a new attempt), and so loses nothing
but the takeover, falling back on the lease as before.

Format 2 — format 1, and what a sweep that optimises a metric declares and records. The
header adds ``"metric"``, ``"mode"`` (``max`` or ``min``), ``"pruner"`` (its options, or
null) and ``"trials"`` (the bound on trials handed out, or null); ``"strategy"`` may be
``"tpe"``. One event is added::

    {"event":"pruned","trial":7,"attempt":0,"epoch":3,"time":…}

It ends the trial as ``pruned``: a result, never handed out again. A journal is written in
format 2 only when the sweep uses one of these (a grid or random search without ``trials``
keeps format 1, as before), so a reader that knows only format 1 refuses what it would
misread rather than misreading it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Mapping, Optional, Tuple

from ._errors import JournalError
from ._journal import Event
from ._prune import Goal, Table, table_for
from ._space import Space, Strategy
from ._tpe import TPE, finished_key, pruned_key

FORMAT = 2
PLAIN_FORMAT = 1
"""What a sweep that declares nothing of format 2 (grid or random, no bound) writes."""

RUNNING, PREEMPTED, FINISHED, FAILED, PRUNED = (
    "running", "preempted", "finished", "failed", "pruned")
ENDINGS = {"preempted": PREEMPTED, "finished": FINISHED, "failed": FAILED, "pruned": PRUNED}

# Why a trial was handed out again (an assign's "reclaimed")
RECLAIMED_PREEMPTED, RECLAIMED_LEASE, RECLAIMED_HOLDER_GONE = "preempted", "lease", "holder-gone"


def check_header(event: Event) -> None:
    version = event.get("format")
    if not isinstance(version, int) or version > FORMAT:
        raise JournalError(f"journal format {version!r} is newer than this podsweep.hpo "
                           f"reads ({FORMAT}); upgrade podsweep")


@dataclass(frozen=True)
class Holder:
    """The pod a process runs in: its job's uid, its own name and its index in the job."""

    job: str
    pod: str
    index: int

    @property
    def key(self) -> Tuple[str, int]:
        return self.job, self.index

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Optional[Holder]:
        """The pod named by podsweep's variables (on every engine), None outside a pod."""
        job = env.get("PODSWEEP_JOB_UID")
        pod = env.get("PODSWEEP_POD_NAME")
        raw = env.get("PODSWEEP_POD_INDEX") or env.get("JOB_COMPLETION_INDEX")
        if not job or not pod or raw is None or not raw.strip().isdigit():
            return None
        return cls(job, pod, int(raw))

    @classmethod
    def from_event(cls, value: Any) -> Optional[Holder]:
        """An assign's ``holder`` field; None if absent or malformed (then unused)."""
        if not isinstance(value, dict):
            return None
        job, pod, index = value.get("job"), value.get("pod"), value.get("index")
        if not isinstance(job, str) or not isinstance(pod, str) or \
                isinstance(index, bool) or not isinstance(index, int):
            return None
        return cls(job, pod, index)

    def to_event(self) -> Dict[str, Any]:
        return {"job": self.job, "pod": self.pod, "index": self.index}


@dataclass
class Slot:
    """The latest attempt of one trial, as far as handing trials out is concerned."""

    attempt: int
    status: str
    last_seen: float
    lease: float
    epoch: Optional[int] = None
    holder: Optional[Holder] = None


class Ledger:
    """Everything pick() needs, folded from the journal in O(1) per event.

    ``live`` holds running trials in the order they were last heard from, so the one whose
    lease runs out first is at its front and finding it costs O(1) whatever the history.
    ``held`` maps a pod's (job, index) to the running trials held by pods of that index
    (one, but for a pod that runs several picking processes at once).
    """

    def __init__(self) -> None:
        self.header: Optional[Event] = None
        self.space: Optional[Space] = None
        self.goal = Goal()
        self.pruning: Optional[Table] = None
        self.tpe: Optional[TPE] = None
        self.configs: Dict[int, Dict[str, Any]] = {}
        """TPE's trials' configurations (grid and random ones follow from the space)."""
        self.last: Dict[int, Tuple[int, float]] = {}
        """Each unended trial's latest (epoch, score), for ranking it once it ends."""
        self.handed = 0
        self.slots: Dict[int, Slot] = {}
        self.reclaimable: Deque[int] = deque()
        self.live: OrderedDict[int, None] = OrderedDict()
        self.held: Dict[Tuple[str, int], Dict[int, None]] = {}

    def apply(self, event: Event) -> None:
        kind = event.get("event")
        try:
            if kind == "experiment":
                if self.header is None:
                    check_header(event)
                    self.header = event
                    self.space = Space.from_spec(event["strategy"], event["space"],
                                                 event.get("seed", 0), event.get("trials"))
                    self.goal = Goal.from_header(event)
                    self.pruning = table_for(self.goal.pruner)
                    if self.space.strategy is Strategy.TPE:
                        self.tpe = TPE(self.space)
                return
            trial = int(event["trial"])
            attempt = int(event.get("attempt", 0))
            if kind == "assign":
                self._assign(trial, attempt, event)
            elif kind == "report":
                self._report(trial, attempt, event)
            elif kind == "heartbeat":
                self._heard(trial, attempt, float(event["time"]))
            elif kind in ENDINGS:
                self._end(trial, attempt, ENDINGS[kind])
        except (KeyError, TypeError, ValueError):
            pass   # a malformed record is skipped, as an unparseable line is

    def _assign(self, trial: int, attempt: int, event: Event) -> None:
        slot = self.slots.get(trial)
        if slot is not None and attempt <= slot.attempt:
            return
        epoch = slot.epoch if slot is not None else None
        holder = Holder.from_event(event.get("holder"))
        if slot is None and self.tpe is not None:
            config = event.get("config")
            if isinstance(config, dict):
                self.configs[trial] = config
            self.tpe.assigned(trial, config)
        new = Slot(attempt, RUNNING, float(event["time"]), float(event.get("lease", 60)),
                   epoch, holder)
        if slot is not None:
            self._release(trial, slot)
        self.slots[trial] = new
        if holder is not None:
            self.held.setdefault(holder.key, {})[trial] = None
        self.live[trial] = None
        self.live.move_to_end(trial)
        self.handed = max(self.handed, trial)

    def _report(self, trial: int, attempt: int, event: Event) -> None:
        slot = self.slots.get(trial)
        if slot is None:
            return
        epoch = int(event["epoch"])
        slot.epoch = epoch if slot.epoch is None else max(slot.epoch, epoch)
        self._heard(trial, attempt, float(event["time"]))
        score = self.goal.score(event.get("metrics"))
        if score is None or slot.status not in (RUNNING, PREEMPTED):
            return
        if epoch >= self.last.get(trial, (-1, 0.0))[0]:
            self.last[trial] = (epoch, score)
        if self.pruning is not None:
            self.pruning.record(trial, epoch, score)

    def _heard(self, trial: int, attempt: int, when: float) -> None:
        slot = self.slots.get(trial)
        if slot is not None and slot.attempt == attempt and slot.status == RUNNING:
            slot.last_seen = max(slot.last_seen, when)
            self.live.move_to_end(trial)

    def _end(self, trial: int, attempt: int, status: str) -> None:
        slot = self.slots.get(trial)
        if slot is None or slot.attempt != attempt or slot.status != RUNNING:
            return
        slot.status = status
        self._release(trial, slot)
        self.live.pop(trial, None)
        if status == PREEMPTED:
            self.reclaimable.append(trial)
            return
        if self.pruning is not None:
            self.pruning.ended(trial, finished=status == FINISHED)
        last = self.last.pop(trial, None)
        if self.tpe is None:
            return
        if last is None or status == FAILED:
            self.tpe.discarded(trial)
        elif status == FINISHED:
            self.tpe.observed(trial, finished_key(trial, last[1]))
        else:
            self.tpe.observed(trial, pruned_key(trial, last[0], last[1]))

    def prune_at(self, trial: int, attempt: int, epoch: int, metrics: Any) -> Optional[int]:
        """Whether this report, were it appended now, ends the trial: the rung (ASHA) or
        epoch (median) it is pruned at, or None. Only the latest attempt of a running trial
        is judged."""
        slot = self.slots.get(trial)
        if self.pruning is None or slot is None or slot.attempt != attempt \
                or slot.status != RUNNING:
            return None
        score = self.goal.score(metrics)
        return None if score is None else self.pruning.decide(trial, epoch, score)

    def config(self, trial: int) -> Dict[str, Any]:
        """Trial ``trial``'s configuration: the recorded one if it was handed out before."""
        assert self.space is not None
        if self.tpe is None:
            return self.space.config(trial)
        known = self.configs.get(trial)
        return dict(known) if known is not None else self.tpe.suggest(trial)

    def _release(self, trial: int, slot: Slot) -> None:
        """The trial is no longer held by its slot's holder (it ended, or was reassigned)."""
        if slot.holder is None:
            return
        trials = self.held.get(slot.holder.key)
        if trials is not None:
            trials.pop(trial, None)
            if not trials:
                del self.held[slot.holder.key]

    def orphaned(self, holder: Holder) -> Optional[int]:
        """A running trial held by another pod of ``holder``'s job and index, if any.

        An engine never runs two pods of one index at once: that pod is dead.
        """
        for trial in self.held.get(holder.key, ()):
            held_by = self.slots[trial].holder
            if held_by is not None and held_by.pod != holder.pod:
                return trial
        return None

    def next_trial(self, now: float, holder: Optional[Holder] = None
                   ) -> Tuple[Optional[int], Optional[str]]:
        """The trial to hand out next and why: (trial, "holder-gone" | "preempted" |
        "lease" | None).

        First the trial of the dead pod that ``holder`` replaces (the rerun of its index);
        then preempted trials, in the order they were preempted; then the running trial
        heard from longest ago, if its lease has run out; then the next fresh one. Returns
        (None, None) when the space is exhausted.
        """
        if holder is not None:
            trial = self.orphaned(holder)
            if trial is not None:
                return trial, RECLAIMED_HOLDER_GONE
        while self.reclaimable:
            trial = self.reclaimable.popleft()
            if self.slots[trial].status == PREEMPTED:
                return trial, RECLAIMED_PREEMPTED
        if self.live:
            trial = next(iter(self.live))
            slot = self.slots[trial]
            if now - slot.last_seen > slot.lease:
                return trial, RECLAIMED_LEASE
        assert self.space is not None
        size = self.space.size
        if size is None or self.handed < size:
            return self.handed + 1, None
        return None, None

    def counts(self) -> Dict[str, Any]:
        """How many trials are in each state (for messages; O(trials), not on a hot path)."""
        out: Dict[str, int] = {}
        for slot in self.slots.values():
            out[slot.status] = out.get(slot.status, 0) + 1
        return out
