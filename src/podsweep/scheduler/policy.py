"""The scheduler's decision: which pods start and which are preempted, as a pure function.

:func:`decide` runs one scheduling cycle over an immutable :class:`Snapshot` of the machine
(its GPUs, the projects, the unfinished jobs, the pods holding GPUs) and returns a
:class:`Decision`. It does no I/O, reads no clock and draws no random numbers: the same
snapshot always gives the same decision, whatever the order of its tuples. The cycle runs
in phases:

1. **Demand.** A job wants ``gpus * min(parallelism, active + len(pending))`` GPUs; a
   project wants the sum over its jobs.
2. **Fair share** (water-filling, :func:`fair_shares`). Each project first gets
   ``min(demand, quota)``. The GPUs left over are shared among the projects whose demand is
   not met yet, in proportion to their quotas (equally if all of those have quota 0), never
   more than a project's demand; repeat until no GPU is left or every demand is met.
3. **Usage.** A project uses the GPUs its pods hold, running or terminating.
4. **Starts** (work-conserving). A job's candidates are its next pending pods, in order,
   while ``active + started`` stays within ``parallelism``; a project's candidates are its
   jobs' in submit order (``seq``). Pods without GPUs start at once and count for no
   share. Otherwise the next start goes to the project with the lowest
   ``usage / fair share`` (starts of this cycle included; ties by name; projects with no
   share last, the least used first), if its first candidate fits in the free GPUs, which
   it gets lowest ids first. A project whose first candidate does not fit is blocked for
   the cycle: a later small job never overtakes an earlier big one. Once a project below
   its fair share is blocked (by a pod the machine could hold at all), projects at or
   above theirs start nothing more this cycle, so that the GPUs it waits for are not lent
   out only to be preempted again.
5. **Preemption.** For each project still holding a first candidate, lowest
   ``usage / fair share`` first, whose usage plus that pod's GPUs stays within its fair
   share: the GPUs that are free, held by terminating pods or freed by victims already
   chosen (less those promised to projects served earlier in this phase) count first. If
   they fall short, victims are chosen among running pods of other projects that are over
   both their fair share and their quota: from the most over-share project first, newest
   pod first (:func:`_victim_order`), and only while the victim's project keeps at least
   ``max(quota, floor(fair share))`` GPUs. If no set of victims covers the pod, nothing is
   preempted for it.

Hence a project at or below its quota is never preempted, a terminating pod is never
preempted again, and no GPU held by a pod, terminating or not, is handed out.

Shares are computed with exact fractions, so the comparisons above need no tolerance;
:class:`Decision` reports them as floats.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class ProjectView:
    """A project as the scheduler sees it."""

    name: str
    quota: int  # deserved GPUs


@dataclass(frozen=True)
class PendingPod:
    """A completion index waiting to run, and the attempt it will run as."""

    index: int  # completion index
    attempt: int


@dataclass(frozen=True)
class JobView:
    """An unfinished job: what it asks for, what runs, what waits."""

    uid: str
    name: str
    project: str
    gpus: int  # GPUs per pod (0: takes no GPU, limited only by parallelism)
    parallelism: int
    seq: int  # submit order, lower = earlier
    active: int  # pods of this job now holding GPUs / running (RUNNING or TERMINATING)
    pending: tuple[PendingPod, ...]  # indexes waiting to run, in the order they should run


@dataclass(frozen=True)
class RunningPod:
    """A pod holding GPUs, running or terminating."""

    name: str
    job_uid: str
    project: str
    gpus: tuple[int, ...]  # GPU ids it holds
    seq: int  # start order, higher = started more recently
    terminating: bool = False  # already SIGTERMed; still holds its GPUs until it exits


@dataclass(frozen=True)
class Snapshot:
    """Everything one decision is made from; the order of its tuples does not matter."""

    gpus: tuple[int, ...]  # every GPU id of the machine
    projects: tuple[ProjectView, ...]
    jobs: tuple[JobView, ...]  # only jobs that are not finished
    pods: tuple[RunningPod, ...]  # every pod that holds GPUs (running or terminating)


@dataclass(frozen=True)
class Start:
    """Start this pending pod on these GPUs."""

    job_uid: str
    index: int
    attempt: int
    gpus: tuple[int, ...]  # GPU ids given to the new pod, lowest free ids first


@dataclass(frozen=True)
class Decision:
    """The outcome of one cycle: preempt these pods, start those."""

    starts: tuple[Start, ...]
    preempt: tuple[str, ...]  # names of RunningPods to preempt (never a terminating one)
    shares: dict[str, float]  # each project's fair share in GPUs, by project name


@dataclass(frozen=True)
class _Candidate:
    job: JobView
    pod: PendingPod


def fair_shares(
    total: int, quotas: Mapping[str, int], demands: Mapping[str, int]
) -> dict[str, float]:
    """Each project's fair share of ``total`` GPUs (phase 2), by project name.

    A project named in only one of ``quotas`` and ``demands`` has 0 for the other. When
    the quotas of the projects that want GPUs add up to more than ``total``, each still
    gets ``min(demand, quota)`` and the shares add up to more than ``total``: a quota is a
    promise that its project may reclaim its GPUs from borrowers, and scaling it down
    would let a borrower keep them.
    """
    return {name: float(share) for name, share in _water_fill(total, quotas, demands).items()}


def _water_fill(
    total: int, quotas: Mapping[str, int], demands: Mapping[str, int]
) -> dict[str, Fraction]:
    if total < 0 or any(v < 0 for v in (*quotas.values(), *demands.values())):
        raise ValueError("GPU counts, quotas and demands must not be negative")
    names = sorted(set(quotas) | set(demands))
    quota = {p: quotas.get(p, 0) for p in names}
    demand = {p: demands.get(p, 0) for p in names}
    share = {p: Fraction(min(demand[p], quota[p])) for p in names}
    left = Fraction(total) - sum(share.values(), Fraction(0))
    while left > 0:
        unmet = [p for p in names if share[p] < demand[p]]
        if not unmet:
            break
        weight = {p: quota[p] for p in unmet}
        if not any(weight.values()):
            weight = dict.fromkeys(unmet, 1)
        whole = sum(weight.values())
        # Projects that the proportional offer would fill are filled exactly and leave the
        # pool; what they did not need is offered again to the others on the next pass.
        full = [p for p in unmet if demand[p] - share[p] <= left * weight[p] / whole]
        if not full:
            for p in unmet:
                share[p] += left * weight[p] / whole
            break
        for p in full:
            left -= demand[p] - share[p]
            share[p] = Fraction(demand[p])
    return share


def decide(snapshot: Snapshot) -> Decision:
    """One scheduling cycle over ``snapshot``: the pods to start and the pods to preempt.

    Raises :class:`ValueError` if the snapshot contradicts itself (two projects of one
    name, two jobs of one uid, one GPU held by two pods, a negative count): deciding on it
    could hand one GPU to two pods. Pod names need not be unique (a job resubmitted under
    its old name while its old pods terminate, or jobs of one name in two projects); the
    caller tells such pods apart by job uid as well.
    """
    _check(snapshot)
    machine = frozenset(snapshot.gpus)
    # Phase 1: demand. Jobs come in submit order, whatever the order of the tuple.
    jobs = sorted(snapshot.jobs, key=lambda j: (j.seq, j.uid))
    quotas = {p.name: p.quota for p in snapshot.projects}
    for name in [j.project for j in jobs] + [p.project for p in snapshot.pods]:
        quotas.setdefault(name, 0)  # a project deleted under its jobs deserves nothing
    demands = dict.fromkeys(quotas, 0)
    for job in jobs:
        demands[job.project] += job.gpus * min(job.parallelism, job.active + len(job.pending))
    # Phase 2: fair share.
    shares = _water_fill(len(machine), quotas, demands)
    # Phase 3: usage.
    usage = dict.fromkeys(quotas, 0)
    held: set[int] = set()
    for pod in snapshot.pods:
        usage[pod.project] += len(pod.gpus)
        held.update(pod.gpus)
    free = sorted(machine - held)
    # Phase 4: starts.
    starts, queues = _start(jobs, shares, usage, free, len(machine))
    # Phase 5: preemption.
    heads = {p: q[0] for p, q in queues.items() if q}
    preempt = _preempt(snapshot.pods, heads, shares, quotas, usage, len(free), machine)
    return Decision(
        starts=tuple(starts),
        preempt=tuple(preempt),
        shares={p: float(shares[p]) for p in sorted(shares)},
    )


def _check(snapshot: Snapshot) -> None:
    for what, keys in (
        ("project", [p.name for p in snapshot.projects]),
        ("job", [j.uid for j in snapshot.jobs]),
        ("GPU held by a pod", [g for p in snapshot.pods for g in p.gpus]),
    ):
        twice = sorted(str(k) for k, n in Counter(keys).items() if n > 1)
        if twice:
            raise ValueError(f"snapshot has one {what} twice: {', '.join(twice)}")
    if any(p.quota < 0 for p in snapshot.projects) or any(
        min(j.gpus, j.parallelism, j.active) < 0 for j in snapshot.jobs
    ):
        raise ValueError("snapshot has a negative quota, GPU count, parallelism or active count")


def _priority(
    project: str, usage: Mapping[str, int], shares: Mapping[str, Fraction]
) -> tuple[int, Fraction, str]:
    """Sort key: lowest ``usage / fair share`` first, then by name.

    A project with no fair share has an infinite ratio; among those the one using less
    goes first.
    """
    share = shares[project]
    if share > 0:
        return (0, usage[project] / share, project)
    return (1, Fraction(usage[project]), project)


def _start(
    jobs: Iterable[JobView],
    shares: Mapping[str, Fraction],
    usage: dict[str, int],
    free: list[int],
    machine_size: int,
) -> tuple[list[Start], dict[str, deque[_Candidate]]]:
    """Phase 4. Updates ``usage`` and ``free``; returns the starts and what did not start."""
    starts: list[Start] = []
    queues: dict[str, deque[_Candidate]] = {p: deque() for p in sorted(usage)}
    for job in jobs:
        room = max(0, job.parallelism - job.active)
        for pending in job.pending[:room]:
            if job.gpus == 0:
                starts.append(Start(job.uid, pending.index, pending.attempt, ()))
            else:
                queues[job.project].append(_Candidate(job, pending))
    blocked: set[str] = set()
    # Set once a project below its fair share waits for GPUs: from then on the GPUs that
    # come free are kept for the projects below their share.
    reserving = False
    while True:
        ready = [
            p
            for p, queue in queues.items()
            if queue and p not in blocked and not (reserving and usage[p] >= shares[p])
        ]
        if not ready:
            return starts, queues
        project = min(ready, key=lambda p: _priority(p, usage, shares))
        head = queues[project][0]
        need = head.job.gpus
        if need > len(free):
            blocked.add(project)
            # A pod larger than the machine never starts; holding GPUs back for it would
            # only leave them idle forever.
            if usage[project] < shares[project] and need <= machine_size:
                reserving = True
            continue
        given = tuple(free[:need])
        del free[:need]
        starts.append(Start(head.job.uid, head.pod.index, head.pod.attempt, given))
        usage[project] += need
        queues[project].popleft()


def _victim_order(pod: RunningPod) -> tuple[int, str, str]:
    """Within a project, the newest pod is preempted first; ties by name, then job uid."""
    return (-pod.seq, pod.name, pod.job_uid)


def _preempt(
    pods: Iterable[RunningPod],
    heads: Mapping[str, _Candidate],
    shares: Mapping[str, Fraction],
    quotas: Mapping[str, int],
    usage: dict[str, int],
    free: int,
    machine: frozenset[int],
) -> list[str]:
    """Phase 5. Deducts the victims from ``usage``; returns their names."""
    running: dict[str, list[RunningPod]] = {p: [] for p in usage}
    # GPUs on their way back: free ones and those of pods already told to stop. Each
    # project served below claims its pod's worth, so two never count on the same GPU.
    coming = free
    for pod in pods:
        if pod.terminating:
            coming += len(machine.intersection(pod.gpus))
        elif machine.intersection(pod.gpus):
            running[pod.project].append(pod)
    for victims_of_project in running.values():
        victims_of_project.sort(key=_victim_order)
    victims: list[str] = []
    for project in sorted(heads, key=lambda p: _priority(p, usage, shares)):
        need = heads[project].job.gpus
        # A project that lost pods above kept floor(share) GPUs or more, so it never gets
        # here with a whole pod more within its share: nobody preempts and is preempted.
        if usage[project] + need > shares[project]:
            continue
        if need <= coming:
            coming -= need
            continue
        chosen = _choose_victims(need - coming, project, running, shares, quotas, usage, machine)
        if chosen is None:
            continue
        for pod in chosen:
            running[pod.project].remove(pod)
            usage[pod.project] -= len(pod.gpus)
            coming += len(machine.intersection(pod.gpus))
            victims.append(pod.name)
        coming -= need
    return victims


def _choose_victims(
    need: int,
    requester: str,
    running: Mapping[str, list[RunningPod]],
    shares: Mapping[str, Fraction],
    quotas: Mapping[str, int],
    usage: Mapping[str, int],
    machine: frozenset[int],
) -> list[RunningPod] | None:
    """Pods whose preemption frees ``need`` GPUs for ``requester``, or None if none do.

    Each victim is the newest takeable pod of the project most over its share at that
    moment, so that taking several pods spreads over the projects most over their shares.
    """
    left = dict(usage)
    chosen: list[RunningPod] = []
    while need > 0:
        over = sorted(
            (v for v in running if v != requester and left[v] > shares[v] and left[v] > quotas[v]),
            key=lambda v: (-(left[v] - shares[v]), v),
        )
        floor = {v: max(quotas[v], math.floor(shares[v])) for v in over}
        victim = next(
            (
                pod
                for v in over
                for pod in running[v]
                if pod not in chosen and left[v] - len(pod.gpus) >= floor[v]
            ),
            None,
        )
        if victim is None:
            return None
        chosen.append(victim)
        left[victim.project] -= len(victim.gpus)
        need -= len(machine.intersection(victim.gpus))
    return chosen
