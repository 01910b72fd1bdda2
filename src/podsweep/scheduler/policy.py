"""The scheduler's decision: which pods start and which are preempted, as a pure function.

:func:`decide` runs one scheduling cycle over an immutable :class:`Snapshot` of the machine
(its GPUs and, if it schedules them, its CPUs; the projects, the unfinished jobs, the pods
holding resources) and returns a :class:`Decision`. It does no I/O, reads no clock and draws
no random numbers: the same snapshot always gives the same decision, whatever the order of
its tuples.

Resources. GPUs always; CPUs too when ``Snapshot.cpus`` is set (None: GPUs only, as before
CPUs were scheduled). A job's pod needs ``gpus`` GPUs and ``cpu`` CPUs (a count); a
project has a quota of each. ``gpus`` is a whole number of GPUs, each the pod's alone, or a
:class:`~fractions.Fraction` in (0, 1): that share of one GPU, which fractions of other pods
may share up to 1 in all (never a whole-GPU pod). Amounts of GPUs (demands, usage, shares)
are exact fractions of GPUs throughout, so a project with quota 1 runs two pods of 1/2
within it. Every rule below is applied to each resource on its own, and where a rule must
compare projects it uses the *dominant* ratio, the largest of ``usage / fair share`` over
the resources (dominant resource fairness, as Kueue and Run:ai do). The cycle runs in phases:

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
   back at once by the first, cycle after cycle); among those, to the candidate within its
   project's quota of the most resources it needs (a *quota claim* of each, which reclaims
   it from borrowers, so a borrower must not go first); then to the lowest dominant
   ratio over the resources the candidate needs (starts of this cycle included; ties by
   name; projects with no share last, the least used first), if its first candidate fits
   in every free resource (whole GPUs: the lowest free ids; a fraction: best fit, the GPU
   with the least room that holds it, so whole GPUs stay free; see :mod:`._placement`).
   A project whose first candidate does not fit is blocked for the cycle: a later small
   job never overtakes an earlier big one. Once a project below its fair share of a
   resource (or a quota claim of it) is blocked on it (by a pod the machine could hold at
   all), projects at or above their share of it (or that would borrow it) start nothing
   more that needs it this cycle: what it waits for is not lent out only to be preempted.
5. **Preemption.** For each project still holding a first candidate, in the order of
   phase 4, whose usage plus that pod's need stays within its fair share (or its quota) of
   every resource the pod needs: what is free, held by terminating pods or freed by
   victims already chosen (less what was promised to projects served earlier in this
   phase) counts first. If it falls short of a resource, victims are chosen among running
   pods holding it, of other projects over both their fair share and their quota of it:
   from the most over-share project first, newest pod first (:func:`_victim_order`), and
   only while the victim's project keeps more than its quota and its fair share less its
   smallest pod (at least its quota and ``floor(fair share)`` where its pods are whole
   GPUs or CPUs): then its own next pod would take it over both, so it never preempts
   back. A quota claim of a resource (per resource: with the default CPU quota of 0 every
   pod borrows its CPUs, yet its GPUs within the GPU quota are a claim) reclaims it from
   projects over their quota of it whatever their share, while they keep more than their
   quota less their smallest pod: in-quota beats over-quota (Kueue's reclaimWithinCohort),
   even where pods of fractions or of several GPUs, which do not move, leave a borrower
   below its share (shares assume GPUs divide freely). Such a borrower may then preempt
   for its share, but never the claimant (within its quota of it), and its victims keep
   the rule above: no pod is preempted back and forth. GPUs are covered where the pod
   fits (a whole GPU needs an empty one), so victims are chosen until it fits, then any
   that a later one made needless are spared. If no set of victims covers the pod,
   nothing is preempted for it.

Hence a project at or below its quota of a resource is never preempted for it (a borrower
of CPUs may lose a pod that also held GPUs within its GPU quota: the pod is one), a
terminating pod is never preempted again, and nothing held by a pod, terminating or not,
is handed out: no GPU's load passes 1 (a whole-GPU pod's GPUs are its alone) and the
pods' CPUs never add up to more than the machine's (unless the machine shrank under them).

Shares are computed with exact fractions, so the comparisons above need no tolerance;
:class:`Decision` reports them as floats.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from ._check import check
from ._fairshare import water_fill
from ._placement import Placement


@dataclass(frozen=True)
class ProjectView:
    """A project as the scheduler sees it."""

    name: str
    quota: int  # deserved GPUs (whole: a quota of 1 holds two pods of 1/2)
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
    # GPUs per pod: a whole number (0: takes no GPU, limited only by parallelism), or a
    # Fraction in (0, 1), that share of one GPU; never a float, whose sums drift
    gpus: int | Fraction
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
    gpus: tuple[int, ...]  # GPU ids it holds (one, if it holds a fraction)
    seq: int  # start order, higher = started more recently
    terminating: bool = False  # already SIGTERMed; still holds its GPUs until it exits
    cpus: int = 1  # CPUs it holds (read only where the snapshot schedules CPUs)
    fraction: Fraction | None = None  # its share of its one GPU; None: its GPUs are whole


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
    gpus: tuple[int, ...]  # GPU ids given to the new pod: lowest free ids, or the one shared
    fraction: Fraction | None = None  # the pod's share of its one GPU; None: whole GPUs


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


GPU, CPU = "gpus", "cpus"  # the resources, in the order victims are sought for them


def _gpus_of(pod: RunningPod, machine: frozenset[int] | None = None) -> Fraction:
    """The GPUs a pod holds (of those of ``machine``, if given), in GPUs."""
    ids = pod.gpus if machine is None else machine.intersection(pod.gpus)
    return (pod.fraction or Fraction(1)) * len(ids)


@dataclass
class _Ledger:
    """Per resource: the machine's size, the quotas, fair shares and usage, by project;
    and per project the smallest GPU amount its pods take (1 where all are whole)."""

    kinds: tuple[str, ...]
    size: dict[str, int]
    quotas: dict[str, dict[str, int]]
    shares: dict[str, dict[str, Fraction]]
    usage: dict[str, dict[str, Fraction]]
    grain: dict[str, Fraction]

    def need(self, job: JobView) -> dict[str, Fraction]:
        need = {GPU: Fraction(job.gpus), CPU: Fraction(job.cpu)}
        return need if CPU in self.kinds else {GPU: need[GPU]}

    def holds(self, pod: RunningPod) -> dict[str, Fraction]:
        held = {GPU: _gpus_of(pod), CPU: Fraction(pod.cpus)}
        return held if CPU in self.kinds else {GPU: held[GPU]}

    def keeps(self, project: str, resource: str, left: Fraction, claim: bool) -> bool:
        """Whether a victim's project may be left with ``left`` of a resource: enough that
        its own next pod would take it over its quota (for a quota ``claim``) or over its
        quota and its fair share (otherwise). For whole pods that is its quota; a project
        of 3/4-GPU pods holding 1.5 on a quota of 1 may lose one (0.75 + 3/4 is over its
        quota), or the quota it borrows past would be held from the projects owed theirs.
        A claim may leave it below its share (shares assume GPUs divide; pods do not move)."""
        grain = self.grain[project] if resource == GPU else 1
        return (left + grain > self.quotas[resource][project]
                and (claim or left + grain > self.shares[resource][project]))

    def claims(self, project: str, head: JobView) -> set[str]:
        """The resources of which the project's next pod, of job ``head``, keeps it within
        its quota: a quota claim of each, which reclaims it from projects over their quota
        of it (per resource: under the default CPU quota of 0 every pod borrows its CPU)."""
        return {r for r, n in self.need(head).items()
                if n and self.usage[r][project] + n <= self.quotas[r][project]}

    def lends(self, project: str, head: JobView) -> bool:
        """Whether the project's next pod, of job ``head``, would take it over its fair
        share of a resource it needs: then it is lent what it gets, and may lose it."""
        return any(n and self.usage[r][project] + n > self.shares[r][project]
                   for r, n in self.need(head).items())

    def priority(self, project: str, head: JobView) -> tuple[bool, int, int, Fraction, str]:
        """Sort key of a project whose next pod is of job ``head``: projects whose pod
        stays within their share first, among those the pods that claim most resources
        within quota first, then lowest dominant ``usage / fair share`` over the resources
        that pod needs, then by name.

        A project with no share of one of them has an infinite ratio; among those the one
        using least of them (as a fraction of the machine) goes first. Only what the pod
        takes counts: a project whose pod would take it over its share of a resource must
        come after one whose pod stays within its share of it, or the lent pod would be
        preempted by that one at once, and lent again, cycle after cycle; for the same
        reason a pod that borrows a resource comes after one that claims it.
        """
        need = self.need(head)
        first = (self.lends(project, head), -len(self.claims(project, head)))
        wanted = [r for r in self.kinds if need[r] > 0]
        if all(self.shares[r][project] > 0 for r in wanted) and wanted:
            return (*first, 0,
                    max(self.usage[r][project] / self.shares[r][project] for r in wanted),
                    project)
        return (*first, 1, max((self.usage[r][project] / (self.size[r] or 1)
                                for r in wanted), default=Fraction(0)), project)


def _short(need: Mapping[str, Fraction], free: Mapping[str, Fraction], gpus: Placement,
           kinds: Iterable[str]) -> list[str]:
    """The resources a pod does not fit in: GPUs where no GPU (or not enough empty ones)
    has room for it, whatever the sum of the room; CPUs where too few are free."""
    return [r for r in kinds
            if (gpus.fit(need[GPU]) is None if r == GPU else need[r] > free[r])]


def decide(snapshot: Snapshot) -> Decision:
    """One scheduling cycle over ``snapshot``: the pods to start and the pods to preempt.

    Raises :class:`ValueError` if the snapshot contradicts itself (two projects of one
    name, two jobs of one uid, one GPU held by a whole-GPU pod and another, or past 1 by
    fractions, a negative count, a float or a non-whole count above 1 of GPUs): deciding
    on it could hand one GPU to two pods. Pod names need not be unique (a job resubmitted
    under its old name while its old pods terminate, or jobs of one name in two projects);
    the caller tells such pods apart by job uid as well.
    """
    check(snapshot)
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
    grain = dict.fromkeys(names, Fraction(1))
    for project, amount in ([(j.project, Fraction(j.gpus)) for j in jobs]
                            + [(p.project, p.fraction or 1) for p in snapshot.pods]):
        if amount:
            grain[project] = min(grain[project], Fraction(amount))
    ledger = _Ledger(kinds, {GPU: len(machine), CPU: snapshot.cpus or 0}, quotas, {},
                     {r: dict.fromkeys(names, Fraction(0)) for r in kinds}, grain)
    demands = {r: dict.fromkeys(names, Fraction(0)) for r in kinds}
    for job in jobs:
        for r, n in ledger.need(job).items():
            demands[r][job.project] += n * min(job.parallelism, job.active + len(job.pending))
    # Phase 2: fair share.
    ledger.shares = {r: water_fill(ledger.size[r], quotas[r], demands[r]) for r in kinds}
    # Phase 3: usage.
    gpus = Placement(machine)
    for pod in snapshot.pods:
        for r, n in ledger.holds(pod).items():
            ledger.usage[r][pod.project] += n
        gpus.put(pod.gpus, pod.fraction or Fraction(1))
    # CPUs below 0 if the machine shrank under its pods: nothing starts until they end
    free = {CPU: Fraction(ledger.size[CPU] - sum(p.cpus for p in snapshot.pods))}
    # Phase 4: starts.
    starts, queues = _start(jobs, ledger, gpus, free)
    # Phase 5: preemption.
    heads = {p: q[0] for p, q in queues.items() if q}
    preempt = _preempt(snapshot.pods, heads, ledger, free, gpus, machine)
    return Decision(
        starts=tuple(starts),
        preempt=tuple(preempt),
        shares={p: float(s) for p, s in sorted(ledger.shares[GPU].items())},
        cpu_shares={p: float(s) for p, s in sorted(ledger.shares.get(CPU, {}).items())},
    )


def _start(
    jobs: Iterable[JobView],
    ledger: _Ledger,
    gpus: Placement,
    free: dict[str, Fraction],
) -> tuple[list[Start], dict[str, deque[_Candidate]]]:
    """Phase 4. Updates the ledger's usage, ``gpus`` and ``free``; returns the starts and
    what did not start."""
    usage, shares, size, quotas = ledger.usage, ledger.shares, ledger.size, ledger.quotas
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
    # The resources a project below its fair share (or a quota claim) waits for: what of
    # them comes free, as pods end one by one, is kept for those below their share of it
    # (within their quota of it), or a borrower started there would only be preempted.
    reserved: dict[str, set[str]] = {"share": set(), "quota": set()}

    def held_back(project: str) -> bool:
        u = {r: usage[r][project] for r in ledger.kinds}
        return any(n and ((r in reserved["share"] and u[r] >= shares[r][project])
                          or (r in reserved["quota"] and u[r] + n > quotas[r][project]))
                   for r, n in ledger.need(queues[project][0].job).items())

    while True:
        ready = [p for p, queue in queues.items()
                 if queue and p not in blocked and not held_back(p)]
        if not ready:
            return starts, queues
        project = min(ready, key=lambda p: ledger.priority(p, queues[p][0].job))
        head = queues[project][0]
        need = ledger.need(head.job)
        short = _short(need, free, gpus, ledger.kinds)
        if short:
            blocked.add(project)
            # A pod larger than the machine never starts; holding resources back for it
            # would only leave them idle forever.
            if all(need[r] <= size[r] for r in ledger.kinds):
                reserved["share"].update(r for r in short
                                         if usage[r][project] < shares[r][project])
                reserved["quota"].update(set(short) & ledger.claims(project, head.job))
            continue
        given = gpus.take(need[GPU])
        assert given is not None  # not short of GPUs
        fraction = need[GPU] if 0 < need[GPU] < 1 else None
        starts.append(Start(head.job.uid, head.pod.index, head.pod.attempt, given, fraction))
        for r in ledger.kinds:
            usage[r][project] += need[r]
        free[CPU] -= need.get(CPU, 0)
        queues[project].popleft()


def _victim_order(pod: RunningPod) -> tuple[int, str, str]:
    """Within a project, the newest pod is preempted first; ties by name, then job uid."""
    return (-pod.seq, pod.name, pod.job_uid)


def _frees(pod: RunningPod, ledger: _Ledger, machine: frozenset[int]) -> dict[str, Fraction]:
    """What a pod gives back to the machine when it ends (not GPUs the machine lost)."""
    held = ledger.holds(pod)
    held[GPU] = _gpus_of(pod, machine)
    return held


def _release(pods: Iterable[RunningPod], free: Mapping[str, Fraction],
             gpus: Placement) -> tuple[dict[str, Fraction], Placement]:
    """What is free once ``pods`` have ended (copies; the arguments are left as they are)."""
    free, gpus = dict(free), gpus.copy()
    for pod in pods:
        gpus.put(pod.gpus, pod.fraction or Fraction(1), -1)
        free[CPU] += pod.cpus
    return free, gpus


def _preempt(
    pods: Iterable[RunningPod],
    heads: Mapping[str, _Candidate],
    ledger: _Ledger,
    free: Mapping[str, Fraction],
    gpus: Placement,
    machine: frozenset[int],
) -> list[str]:
    """Phase 5. Deducts the victims from the ledger's usage; returns their names."""
    usage, shares = ledger.usage, ledger.shares
    running: dict[str, list[RunningPod]] = {p: [] for p in usage[GPU]}
    # What is on its way back: what is free and what pods already told to stop hold. Each
    # project served below claims its pod's place, so two never count on the same GPU/CPU.
    for pod in pods:
        if not pod.terminating and any(_frees(pod, ledger, machine).values()):
            running[pod.project].append(pod)
    coming, gpus = _release([p for p in pods if p.terminating], free, gpus)
    for victims_of_project in running.values():
        victims_of_project.sort(key=_victim_order)
    victims: list[str] = []
    for project in sorted(heads, key=lambda p: ledger.priority(p, heads[p].job)):
        need = ledger.need(heads[project].job)
        # A project that lost pods above kept more than its share less its smallest pod
        # (or its quota), so it never gets here with a pod more within its share (or
        # quota): nobody preempts and is preempted for one resource. A claim may pass its
        # share: its usage may count pods of jobs gone, which its demand does not.
        claims = ledger.claims(project, heads[project].job)
        if any(n and usage[r][project] + n > shares[r][project] and r not in claims
               for r, n in need.items()):
            continue
        if _short(need, coming, gpus, ledger.kinds):
            chosen = _choose_victims(need, project, claims, running, ledger, machine, coming,
                                     gpus)
            if chosen is None and 0 < need[GPU] <= 1:
                # The newest pods may be spread over GPUs that stay shared: try to empty
                # enough of one GPU, lowest id first, by the same order within it.
                chosen = next((c for g in sorted(gpus.load) if (c := _choose_victims(
                    need, project, claims, running, ledger, machine, coming, gpus, g))
                    is not None), None)
            if chosen is None:
                continue
            for pod in chosen:
                running[pod.project].remove(pod)
                for r, n in ledger.holds(pod).items():
                    usage[r][pod.project] -= n
                victims.append(pod.name)
            coming, gpus = _release(chosen, coming, gpus)
        gpus.take(need[GPU])
        coming[CPU] -= need.get(CPU, 0)
    return victims


def _choose_victims(
    need: Mapping[str, Fraction],
    requester: str,
    claims: set[str],
    running: Mapping[str, list[RunningPod]],
    ledger: _Ledger,
    machine: frozenset[int],
    free: Mapping[str, Fraction],
    gpus: Placement,
    on: int | None = None,
) -> list[RunningPod] | None:
    """Pods whose preemption makes room for what ``requester`` needs, or None if none do.

    Resources are covered in a fixed order (GPUs, then CPUs). For each, a victim is the
    newest takeable pod holding it, of the project most over its share of it at that
    moment, so that taking several pods spreads over the projects most over their shares.
    GPUs are covered once the pod fits on them, not once enough is free in all: a victim
    sharing its GPU with pods that stay may free room nowhere useful, so once the pod fits,
    each victim that the others make needless is spared (the last chosen first). With
    ``on``, victims for GPUs are only pods on that GPU.
    """
    shares, quotas = ledger.shares, ledger.quotas
    left = {r: dict(ledger.usage[r]) for r in ledger.kinds}
    chosen: list[RunningPod] = []
    while short := _short(need, *_release(chosen, free, gpus), ledger.kinds):
        r = short[0]
        over = sorted(
            (v for v in running
             if v != requester and left[r][v] > quotas[r][v]
            and (r in claims or left[r][v] > shares[r][v])),
            key=lambda v: (-(left[r][v] - shares[r][v]), v),
        )
        victim = next(
            (
                pod
                for v in over
                for pod in running[v]
                if pod not in chosen
                and _frees(pod, ledger, machine)[r]
                and (r != GPU or on is None or on in pod.gpus)
                and ledger.keeps(v, r, left[r][v] - ledger.holds(pod)[r], r in claims)
            ),
            None,
        )
        if victim is None:
            return None
        chosen.append(victim)
        for k, n in ledger.holds(victim).items():
            left[k][victim.project] -= n
    for victim in reversed(chosen[:-1]):
        rest = [p for p in chosen if p is not victim]
        if not _short(need, *_release(rest, free, gpus), ledger.kinds):
            chosen = rest
    return chosen
