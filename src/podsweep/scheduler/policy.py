"""The scheduler's decision: which pods start and which are preempted, as a pure function.

:func:`decide` runs one scheduling cycle over an immutable :class:`Snapshot` of the machine
(its GPUs and, if it schedules them, its CPUs; the projects, the unfinished jobs, the pods
holding resources) and returns a :class:`Decision`. It does no I/O, reads no clock and draws
no random numbers: the same snapshot always gives the same decision, whatever the order of
its tuples.

Resources. GPUs always; CPUs too when ``Snapshot.cpus`` is set (None: GPUs only, as before
CPUs were scheduled). A job's pod needs ``gpus`` GPUs (given by id) and ``cpu`` CPUs (a
count); a project has a quota of each. Every rule below is applied to each resource on its
own, and where a rule must compare projects it uses the *dominant* ratio, the largest of
``usage / fair share`` over the resources (dominant resource fairness, as Kueue and Run:ai
do). The cycle runs in phases:

1. **Demand.** A job wants ``need * min(parallelism, active + len(pending))`` of each
   resource; a project wants the sum over its jobs.
2. **Fair share** (water-filling, :func:`fair_shares`, per resource). Each project first
   gets ``min(demand, quota)``. What is left over is shared among the projects whose demand
   is not met yet, in proportion to their quotas (equally if all of those have quota 0),
   never more than a project's demand; repeat until none is left or every demand is met.
3. **Usage.** A project uses what its pods hold, running or terminating.
4. **Starts** (work-conserving). A job's candidates are its next pending pods, in order,
   while ``active + started`` stays within ``parallelism``; a project's candidates are its
   jobs' in submit order (``seq``). Pods that need nothing (no GPU, and no CPU or CPUs not
   scheduled) start at once and count for no share. Otherwise the next start goes to a
   project whose first candidate stays within its fair share of all it needs, before any
   whose candidate would be lent resources beyond its share (or it would be preempted
   back at once by the first, cycle after cycle); among those, to the lowest dominant
   ratio over the resources the candidate needs (starts of this cycle included; ties by
   name; projects with no share last, the least used first), if its first candidate fits
   in every free resource (GPUs given lowest ids first). A project whose first candidate does
   not fit is blocked for the cycle: a later small job never overtakes an earlier big one.
   Once a project below its fair share of a resource is blocked on it (by a pod the
   machine could hold at all), projects at or above their share of that resource start
   nothing more that needs it this cycle, so that what it waits for is not lent out only
   to be preempted again.
5. **Preemption.** For each project still holding a first candidate, lowest dominant ratio
   first, whose usage plus that pod's need stays within its fair share of every resource
   the pod needs: what is free, held by terminating pods or freed by victims already chosen
   (less what was promised to projects served earlier in this phase) counts first. If it
   falls short of a resource, victims are chosen among running pods holding it, of other
   projects over both their fair share and their quota of it: from the most over-share
   project first, newest pod first (:func:`_victim_order`), and only while the victim's
   project keeps at least ``max(quota, floor(fair share))`` of it. If no set of victims
   covers the pod, nothing is preempted for it.

Hence a project at or below its quota of a resource is never preempted for it (a borrower
of CPUs may lose a pod that also held GPUs within its GPU quota: the pod is one), a
terminating pod is never preempted again, and nothing held by a pod, terminating or not,
is handed out: the pods' GPUs are distinct and their CPUs never add up to more than the
machine's (unless the machine shrank under them).

Shares are computed with exact fractions, so the comparisons above need no tolerance;
:class:`Decision` reports them as floats.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction


@dataclass(frozen=True)
class ProjectView:
    """A project as the scheduler sees it."""

    name: str
    quota: int  # deserved GPUs
    cpu_quota: int = 0  # deserved CPUs (read only where the snapshot schedules CPUs)


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
    cpu: int = 1  # CPUs per pod (read only where the snapshot schedules CPUs)


@dataclass(frozen=True)
class RunningPod:
    """A pod holding GPUs, running or terminating."""

    name: str
    job_uid: str
    project: str
    gpus: tuple[int, ...]  # GPU ids it holds
    seq: int  # start order, higher = started more recently
    terminating: bool = False  # already SIGTERMed; still holds its GPUs until it exits
    cpus: int = 1  # CPUs it holds (read only where the snapshot schedules CPUs)


@dataclass(frozen=True)
class Snapshot:
    """Everything one decision is made from; the order of its tuples does not matter."""

    gpus: tuple[int, ...]  # every GPU id of the machine
    projects: tuple[ProjectView, ...]
    jobs: tuple[JobView, ...]  # only jobs that are not finished
    pods: tuple[RunningPod, ...]  # every pod that holds GPUs or CPUs (running or terminating)
    cpus: int | None = None  # the machine's CPUs; None: CPUs are not scheduled


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
    # each project's fair share in CPUs, by project name; empty where CPUs are not scheduled
    cpu_shares: dict[str, float] = field(default_factory=dict)


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


GPU, CPU = "gpus", "cpus"  # the resources, in the order victims are sought for them


@dataclass
class _Ledger:
    """Per resource: the machine's size, the quotas, fair shares and usage, by project."""

    kinds: tuple[str, ...]
    size: dict[str, int]
    quotas: dict[str, dict[str, int]]
    shares: dict[str, dict[str, Fraction]]
    usage: dict[str, dict[str, int]]

    def need(self, job: JobView) -> dict[str, int]:
        return {GPU: job.gpus, CPU: job.cpu} if CPU in self.kinds else {GPU: job.gpus}

    def holds(self, pod: RunningPod) -> dict[str, int]:
        return {GPU: len(pod.gpus), CPU: pod.cpus} if CPU in self.kinds else {GPU: len(pod.gpus)}

    def lends(self, project: str, head: JobView) -> bool:
        """Whether the project's next pod, of job ``head``, would take it over its fair
        share of a resource it needs: then it is lent what it gets, and may lose it."""
        return any(n and self.usage[r][project] + n > self.shares[r][project]
                   for r, n in self.need(head).items())

    def priority(self, project: str, head: JobView) -> tuple[bool, int, Fraction, str]:
        """Sort key of a project whose next pod is of job ``head``: projects whose pod
        stays within their share first, then lowest dominant ``usage / fair share`` over
        the resources that pod needs, then by name.

        A project with no share of one of them has an infinite ratio; among those the one
        using least of them (as a fraction of the machine) goes first. Only what the pod
        takes counts: a project whose pod would take it over its share of a resource must
        come after one whose pod stays within its share of it, or the lent pod would be
        preempted by that one at once, and lent again, cycle after cycle.
        """
        need = self.need(head)
        lends = self.lends(project, head)
        wanted = [r for r in self.kinds if need[r] > 0]
        if all(self.shares[r][project] > 0 for r in wanted) and wanted:
            return (lends, 0,
                    max(self.usage[r][project] / self.shares[r][project] for r in wanted),
                    project)
        return (lends, 1, max((Fraction(self.usage[r][project], self.size[r] or 1)
                               for r in wanted), default=Fraction(0)), project)


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
    kinds = (GPU,) if snapshot.cpus is None else (GPU, CPU)
    # Phase 1: demand. Jobs come in submit order, whatever the order of the tuple.
    jobs = sorted(snapshot.jobs, key=lambda j: (j.seq, j.uid))
    quotas = {GPU: {p.name: p.quota for p in snapshot.projects},
              CPU: {p.name: p.cpu_quota for p in snapshot.projects}}
    for name in [j.project for j in jobs] + [p.project for p in snapshot.pods]:
        for r in kinds:  # a project deleted under its jobs deserves nothing
            quotas[r].setdefault(name, 0)
    names = sorted(quotas[GPU])
    ledger = _Ledger(kinds, {GPU: len(machine), CPU: snapshot.cpus or 0}, quotas, {},
                     {r: dict.fromkeys(names, 0) for r in kinds})
    demands = {r: dict.fromkeys(names, 0) for r in kinds}
    for job in jobs:
        for r, n in ledger.need(job).items():
            demands[r][job.project] += n * min(job.parallelism, job.active + len(job.pending))
    # Phase 2: fair share.
    ledger.shares = {r: _water_fill(ledger.size[r], quotas[r], demands[r]) for r in kinds}
    # Phase 3: usage.
    held: set[int] = set()
    for pod in snapshot.pods:
        for r, n in ledger.holds(pod).items():
            ledger.usage[r][pod.project] += n
        held.update(pod.gpus)
    free_gpus = sorted(machine - held)
    # CPUs below 0 if the machine shrank under its pods: nothing starts until they end
    free = {GPU: len(free_gpus), CPU: ledger.size[CPU] - sum(p.cpus for p in snapshot.pods)}
    # Phase 4: starts.
    starts, queues = _start(jobs, ledger, free_gpus, free)
    # Phase 5: preemption.
    heads = {p: q[0] for p, q in queues.items() if q}
    preempt = _preempt(snapshot.pods, heads, ledger, free, machine)
    return Decision(
        starts=tuple(starts),
        preempt=tuple(preempt),
        shares={p: float(s) for p, s in sorted(ledger.shares[GPU].items())},
        cpu_shares={p: float(s) for p, s in sorted(ledger.shares.get(CPU, {}).items())},
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
    if (
        any(min(p.quota, p.cpu_quota) < 0 for p in snapshot.projects)
        or any(min(j.gpus, j.cpu, j.parallelism, j.active) < 0 for j in snapshot.jobs)
        or any(p.cpus < 0 for p in snapshot.pods)
        or (snapshot.cpus is not None and snapshot.cpus < 0)
    ):
        raise ValueError("snapshot has a negative quota, GPU or CPU count, parallelism or "
                         "active count")


def _start(
    jobs: Iterable[JobView],
    ledger: _Ledger,
    free_gpus: list[int],
    free: dict[str, int],
) -> tuple[list[Start], dict[str, deque[_Candidate]]]:
    """Phase 4. Updates the ledger's usage, ``free_gpus`` and ``free``; returns the starts
    and what did not start."""
    usage, shares, size = ledger.usage, ledger.shares, ledger.size
    starts: list[Start] = []
    queues: dict[str, deque[_Candidate]] = {p: deque() for p in sorted(usage[GPU])}
    for job in jobs:
        room = max(0, job.parallelism - job.active)
        for pending in job.pending[:room]:
            if not any(ledger.need(job).values()):
                starts.append(Start(job.uid, pending.index, pending.attempt, ()))
            else:
                queues[job.project].append(_Candidate(job, pending))
    blocked: set[str] = set()
    # The resources a project below its fair share waits for: from then on, what of them
    # comes free is kept for the projects below their share of it.
    reserved: set[str] = set()

    def held_back(project: str) -> bool:
        need = ledger.need(queues[project][0].job)
        return any(need[r] and usage[r][project] >= shares[r][project] for r in reserved)

    while True:
        ready = [p for p, queue in queues.items()
                 if queue and p not in blocked and not held_back(p)]
        if not ready:
            return starts, queues
        project = min(ready, key=lambda p: ledger.priority(p, queues[p][0].job))
        head = queues[project][0]
        need = ledger.need(head.job)
        short = [r for r in ledger.kinds if need[r] > free[r]]
        if short:
            blocked.add(project)
            # A pod larger than the machine never starts; holding resources back for it
            # would only leave them idle forever.
            if all(need[r] <= size[r] for r in ledger.kinds):
                reserved.update(r for r in short if usage[r][project] < shares[r][project])
            continue
        given = tuple(free_gpus[: need[GPU]])
        del free_gpus[: need[GPU]]
        starts.append(Start(head.job.uid, head.pod.index, head.pod.attempt, given))
        for r in ledger.kinds:
            usage[r][project] += need[r]
            free[r] -= need[r]
        queues[project].popleft()


def _victim_order(pod: RunningPod) -> tuple[int, str, str]:
    """Within a project, the newest pod is preempted first; ties by name, then job uid."""
    return (-pod.seq, pod.name, pod.job_uid)


def _frees(pod: RunningPod, ledger: _Ledger, machine: frozenset[int]) -> dict[str, int]:
    """What a pod gives back to the machine when it ends (not GPUs the machine lost)."""
    held = ledger.holds(pod)
    held[GPU] = len(machine.intersection(pod.gpus))
    return held


def _preempt(
    pods: Iterable[RunningPod],
    heads: Mapping[str, _Candidate],
    ledger: _Ledger,
    free: Mapping[str, int],
    machine: frozenset[int],
) -> list[str]:
    """Phase 5. Deducts the victims from the ledger's usage; returns their names."""
    usage, shares = ledger.usage, ledger.shares
    running: dict[str, list[RunningPod]] = {p: [] for p in usage[GPU]}
    # What is on its way back: what is free and what pods already told to stop hold. Each
    # project served below claims its pod's worth, so two never count on the same GPU/CPU.
    coming = dict(free)
    for pod in pods:
        frees = _frees(pod, ledger, machine)
        if pod.terminating:
            for r in ledger.kinds:
                coming[r] += frees[r]
        elif any(frees.values()):
            running[pod.project].append(pod)
    for victims_of_project in running.values():
        victims_of_project.sort(key=_victim_order)
    victims: list[str] = []
    for project in sorted(heads, key=lambda p: ledger.priority(p, heads[p].job)):
        need = ledger.need(heads[project].job)
        # A project that lost pods above kept floor(share) of what they held, so it never
        # gets here with a whole pod more within its share of that: nobody preempts and is
        # preempted for one resource.
        if any(n and usage[r][project] + n > shares[r][project] for r, n in need.items()):
            continue
        short = {r: need[r] - coming[r] for r in ledger.kinds if need[r] > coming[r]}
        if short:
            chosen = _choose_victims(short, project, running, ledger, machine)
            if chosen is None:
                continue
            for pod in chosen:
                running[pod.project].remove(pod)
                frees = _frees(pod, ledger, machine)
                for r, n in ledger.holds(pod).items():
                    usage[r][pod.project] -= n
                    coming[r] += frees[r]
                victims.append(pod.name)
        for r in ledger.kinds:
            coming[r] -= need[r]
    return victims


def _choose_victims(
    short: Mapping[str, int],
    requester: str,
    running: Mapping[str, list[RunningPod]],
    ledger: _Ledger,
    machine: frozenset[int],
) -> list[RunningPod] | None:
    """Pods whose preemption frees what ``requester`` is ``short`` of, or None if none do.

    Resources are covered in a fixed order (GPUs, then CPUs). For each, a victim is the
    newest takeable pod holding it, of the project most over its share of it at that
    moment, so that taking several pods spreads over the projects most over their shares.
    """
    shares, quotas = ledger.shares, ledger.quotas
    left = {r: dict(ledger.usage[r]) for r in ledger.kinds}
    missing = dict(short)
    chosen: list[RunningPod] = []
    while (r := next((k for k in ledger.kinds if missing.get(k, 0) > 0), None)) is not None:
        over = sorted(
            (v for v in running
             if v != requester and left[r][v] > shares[r][v] and left[r][v] > quotas[r][v]),
            key=lambda v: (-(left[r][v] - shares[r][v]), v),
        )
        floor = {v: max(quotas[r][v], math.floor(shares[r][v])) for v in over}
        victim = next(
            (
                pod
                for v in over
                for pod in running[v]
                if pod not in chosen
                and _frees(pod, ledger, machine)[r]
                and left[r][v] - ledger.holds(pod)[r] >= floor[v]
            ),
            None,
        )
        if victim is None:
            return None
        chosen.append(victim)
        frees = _frees(victim, ledger, machine)
        for k, n in ledger.holds(victim).items():
            left[k][victim.project] -= n
            missing[k] = missing.get(k, 0) - frees[k]
    return chosen
