"""The scheduling policy with CPUs scheduled beside GPUs: table-driven cases, then properties
of random snapshots (never more CPUs than the machine has, victims only where the rules
allow) and of whole runs of cycles (quota holders get their quota back from borrowers, and
the cycles settle: nothing is preempted back and forth)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podsweep.scheduler import (
    Decision,
    JobView,
    PendingPod,
    ProjectView,
    RunningPod,
    Snapshot,
    Start,
    decide,
)

from .cases import Case, decided, table

# ---------------------------------------------------------------------------------------
# Builders


def job(uid: str, project: str, *, gpus: int = 0, cpu: int = 1, parallelism: int = 300,
        active: int = 0, pending: int = 0, seq: int = 0) -> JobView:
    pods = tuple(PendingPod(i, 0) for i in range(active, active + pending))
    return JobView(uid, uid, project, gpus, parallelism, seq, active, pods, cpu)


def pod(name: str, project: str, *gpus: int, cpus: int = 1, seq: int,
        terminating: bool = False) -> RunningPod:
    """A pod named ``<job>-<index>-0`` of the job whose uid is ``<job>``."""
    return RunningPod(name, name.split("-")[0], project, gpus, seq, terminating, cpus)


def snap(cpus: int | None, quotas: dict[str, tuple[int, int]], jobs: Sequence[JobView] = (),
         pods: Sequence[RunningPod] = (), gpus: int = 0) -> Snapshot:
    """``quotas``: project -> (GPU quota, CPU quota)."""
    projects = tuple(ProjectView(n, g, c) for n, (g, c) in quotas.items())
    return Snapshot(tuple(range(gpus)), projects, tuple(jobs), tuple(pods), cpus)


def starts(uid: str, *indexes: int) -> tuple[Start, ...]:
    return tuple(Start(uid, i, 0, ()) for i in indexes)


def running(uid: str, project: str, n: int, *, cpus: int = 1, first_seq: int = 1,
            gpus: bool = False) -> list[RunningPod]:
    return [pod(f"{uid}-{k}-0", project, *((k,) if gpus else ()), cpus=cpus,
                seq=first_seq + k) for k in range(n)]


# ---------------------------------------------------------------------------------------
# Table


CASES = [
    Case(
        "cpus-not-scheduled: pods without GPUs start at once, as before",
        snap(None, {"a": (0, 0)}, [job("s", "a", pending=6)]),
        starts=starts("s", 0, 1, 2, 3, 4, 5),
    ),
    Case(
        "the machine bounds a lone project: quota 2, borrows the other 2 of 4",
        snap(4, {"a": (0, 2)}, [job("s", "a", pending=300)]),
        starts=starts("s", 0, 1, 2, 3),
        cpu_shares={"a": 4.0},
    ),
    Case(
        "--cpu 2 counts twice",
        snap(4, {"a": (0, 2)}, [job("s", "a", cpu=2, pending=5)]),
        starts=starts("s", 0, 1),
    ),
    Case(
        "a quota holder preempts the borrowers, newest first",
        snap(4, {"a": (0, 2), "b": (0, 2)},
             [job("s", "a", active=4, pending=296, seq=1), job("t", "b", pending=3, seq=2)],
             running("s", "a", 4)),
        preempt=("s-3-0",),
        cpu_shares={"a": 2.0, "b": 2.0},
    ),
    Case(
        "freed CPUs go to the quota holder first, not back to the borrower",
        snap(4, {"a": (0, 2), "b": (0, 2)},
             [job("s", "a", active=2, pending=296, seq=1), job("t", "b", pending=3, seq=2)],
             running("s", "a", 2)),
        starts=starts("t", 0, 1),
    ),
    Case(
        "terminating borrowers cover the need: nobody else is preempted",
        snap(4, {"a": (0, 2), "b": (0, 2)},
             [job("s", "a", active=4, pending=296, seq=1), job("t", "b", pending=3, seq=2)],
             [*running("s", "a", 2),
              pod("s-2-0", "a", seq=3, terminating=True),
              pod("s-3-0", "a", seq=4, terminating=True)]),
    ),
    Case(
        "within quota, nothing is preempted",
        snap(4, {"a": (0, 4), "b": (0, 0)},
             [job("s", "a", active=4, pending=10, seq=1), job("t", "b", pending=3, seq=2)],
             running("s", "a", 4)),
    ),
    Case(
        "borrowers with no quota share what is left equally, and lose only the excess",
        snap(4, {"a": (0, 0), "b": (0, 0)},
             [job("s", "a", active=4, pending=10, seq=1), job("t", "b", pending=3, seq=2)],
             running("s", "a", 4)),
        preempt=("s-3-0",),
        cpu_shares={"a": 2.0, "b": 2.0},
    ),
    Case(
        "GPU pods hold CPUs too: 4 GPUs, 2 CPUs, 2 pods",
        snap(2, {"a": (4, 2)}, [job("g", "a", gpus=1, pending=4)], gpus=4),
        starts=(Start("g", 0, 0, (0,)), Start("g", 1, 0, (1,))),
    ),
    Case(
        "a CPU borrower within its GPU quota is preempted for CPUs",
        snap(4, {"a": (4, 0), "b": (0, 2)},
             [job("g", "a", gpus=1, active=4, pending=4, seq=1), job("t", "b", pending=2, seq=2)],
             running("g", "a", 4, gpus=True), gpus=4),
        preempt=("g-3-0",),
    ),
    Case(
        "a pod larger than the machine never starts, and holds nothing back",
        snap(4, {"a": (0, 4), "b": (0, 0)},
             [job("big", "a", cpu=5, pending=1, seq=1), job("t", "b", pending=6, seq=2)]),
        starts=starts("t", 0, 1, 2, 3),
    ),
    Case(
        "a big pod below its share waits; the borrower gets no more meanwhile",
        snap(4, {"a": (0, 4), "b": (0, 0)},
             [job("big", "a", cpu=3, pending=1, seq=2), job("t", "b", active=2, pending=6, seq=1)],
             running("t", "b", 2)),
        preempt=("t-1-0",),
    ),
    Case(
        "dominant resource: the GPU-heavy project and the CPU-heavy one alternate",
        snap(4, {"a": (0, 0), "b": (0, 0)},
             [job("g", "a", gpus=1, parallelism=2, pending=2, seq=1),
              job("c", "b", parallelism=4, pending=4, seq=2)], gpus=2),
        starts=(Start("g", 0, 0, (0,)), Start("c", 0, 0, ()), Start("g", 1, 0, (1,)),
                Start("c", 1, 0, ())),
        cpu_shares={"a": 2.0, "b": 2.0},
    ),
    Case(
        "a freed CPU goes to the project within its share, not to an equal-ratio lender",
        snap(2, {"a": (0, 0), "b": (0, 0), "c": (0, 2)},
             [job("s", "a", pending=4, seq=1), job("t", "b", active=1, pending=4, seq=2),
              job("u", "c", pending=1, seq=3)],
             running("t", "b", 1)),
        starts=starts("u", 0),
        cpu_shares={"a": 0.5, "b": 0.5, "c": 1.0},
    ),
    Case(
        "a shrunk machine starts nothing until its pods end",
        snap(2, {"a": (0, 2)}, [job("s", "a", active=3, pending=3)], running("s", "a", 3)),
    ),
]


@table(CASES)
def test_decide_with_cpus(case: Case) -> None:
    decision = decided(case)
    if case.snapshot.cpus is not None:
        check_invariants(case.snapshot, decision)


def test_negative_cpus_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        decide(snap(-1, {"a": (0, 0)}))
    with pytest.raises(ValueError, match="negative"):
        decide(snap(2, {"a": (0, -1)}))
    with pytest.raises(ValueError, match="negative"):
        decide(snap(2, {"a": (0, 0)}, [job("s", "a", cpu=-1, pending=1)]))


def test_no_cpu_shares_where_cpus_are_not_scheduled() -> None:
    assert decide(snap(None, {"a": (1, 1)}, [job("s", "a", pending=1)])).cpu_shares == {}


# ---------------------------------------------------------------------------------------
# Properties of one decision


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """0-4 GPUs and 0-8 CPUs, 1-3 projects with small quotas of each, 0-5 jobs (0-2 GPUs
    and 0-3 CPUs a pod), their active pods holding what the machine had (some terminating)."""
    n_gpus, n_cpus = draw(st.integers(0, 4)), draw(st.integers(0, 8))
    names = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    projects = [ProjectView(n, draw(st.integers(0, 2)), draw(st.integers(0, 4))) for n in names]
    free_gpus, free_cpus = list(range(n_gpus)), n_cpus
    jobs: list[JobView] = []
    pods: list[RunningPod] = []
    n_jobs = draw(st.integers(0, 5))
    seqs = draw(st.permutations(range(n_jobs)))
    for i in range(n_jobs):
        project = draw(st.sampled_from(names))
        gpus, cpu = draw(st.integers(0, 2)), draw(st.integers(0, 3))
        parallelism = draw(st.integers(1, 5))
        active = 0
        for k in range(draw(st.integers(0, parallelism))):
            if gpus > len(free_gpus) or cpu > free_cpus:
                break
            held = tuple(free_gpus[:gpus])
            del free_gpus[:gpus]
            free_cpus -= cpu
            terminating = draw(st.integers(0, 5)) == 0
            pods.append(RunningPod(f"j{i}-{k}-0", f"u{i}", project, held, 0, terminating, cpu))
            active += 1
        pending = tuple(PendingPod(active + k, 0) for k in range(draw(st.integers(0, 6))))
        jobs.append(JobView(f"u{i}", f"j{i}", project, gpus, parallelism, seqs[i], active,
                            pending, cpu))
    order = draw(st.permutations(range(len(pods))))
    pods = [replace(p, seq=order[n]) for n, p in enumerate(pods)]
    return Snapshot(tuple(range(n_gpus)), tuple(projects), tuple(jobs), tuple(pods), n_cpus)


def check_invariants(snapshot: Snapshot, decision: Decision) -> None:
    assert snapshot.cpus is not None
    jobs = {j.uid: j for j in snapshot.jobs}
    held_cpus = sum(p.cpus for p in snapshot.pods)
    started_cpus = sum(jobs[s.job_uid].cpu for s in decision.starts)
    # Never more CPUs than the machine has (a machine already over starts nothing).
    assert held_cpus + started_cpus <= max(snapshot.cpus, held_cpus)
    if held_cpus >= snapshot.cpus:
        assert all(jobs[s.job_uid].cpu == 0 for s in decision.starts)
    # Within parallelism, in order.
    per_job: dict[str, list[int]] = {}
    for s in decision.starts:
        per_job.setdefault(s.job_uid, []).append(s.index)
        assert len(s.gpus) == jobs[s.job_uid].gpus
    for uid, indexes in per_job.items():
        j = jobs[uid]
        assert j.active + len(indexes) <= j.parallelism
        assert indexes == [p.index for p in j.pending[: len(indexes)]]
    # Victims: running pods of projects over both quota and share of something the victim
    # holds, and no project taken below max(quota, floor(share)) of all such resources.
    quotas = {p.name: {"gpus": p.quota, "cpus": p.cpu_quota} for p in snapshot.projects}
    shares = {"gpus": decision.shares, "cpus": decision.cpu_shares}
    usage: dict[str, dict[str, int]] = {}
    for s in decision.starts:
        j = jobs[s.job_uid]
        u = usage.setdefault(j.project, {"gpus": 0, "cpus": 0})
        u["gpus"] += j.gpus
        u["cpus"] += j.cpu
    for p in snapshot.pods:
        u = usage.setdefault(p.project, {"gpus": 0, "cpus": 0})
        u["gpus"] += len(p.gpus)
        u["cpus"] += p.cpus
    by_name = {p.name: p for p in snapshot.pods}
    assert len(set(decision.preempt)) == len(decision.preempt)
    # A quota claim of a resource (some project's next pod within its quota of it) may
    # take victims below their share of it, never below their quota.
    none = {"gpus": 0, "cpus": 0}
    started: dict[str, int] = {}
    for s in decision.starts:
        started[s.job_uid] = started.get(s.job_uid, 0) + 1
    claim = dict.fromkeys(none, False)
    for j in sorted(snapshot.jobs, key=lambda j: j.seq):
        if min(len(j.pending), j.parallelism - j.active) > started.get(j.uid, 0):
            u, q = usage.get(j.project, none), quotas.get(j.project, none)
            for r, n in (("gpus", j.gpus), ("cpus", j.cpu)):
                claim[r] |= bool(n) and u[r] + n <= q[r]
    left = {p: dict(u) for p, u in usage.items()}
    for name in decision.preempt:
        victim = by_name[name]
        assert not victim.terminating
        quota = quotas.get(victim.project, none)
        holds = {"gpus": len(victim.gpus), "cpus": victim.cpus}
        assert any(holds[r] and usage[victim.project][r] > quota[r]
                   and (claim[r] or usage[victim.project][r] > shares[r][victim.project] + 1e-9)
                   for r in holds)
        for r in holds:
            left[victim.project][r] -= holds[r]
    # No project loses below its quota of a resource on which it lost a pod while over.
    for project in {by_name[n].project for n in decision.preempt}:
        quota = quotas.get(project, none)
        share = {r: 0.0 if claim[r] else shares[r][project] for r in quota}
        assert any(
            left[project][r] >= max(quota[r], math.floor(share[r] + 1e-9))
            for r in ("gpus", "cpus")
            if usage[project][r] > max(quota[r], share[r] + 1e-9)
        )


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_invariants_hold_for_any_snapshot_with_cpus(snapshot: Snapshot) -> None:
    check_invariants(snapshot, decide(snapshot))


# ---------------------------------------------------------------------------------------
# Properties of whole runs: cycle after cycle, preempted pods end before the next one


def run_to_rest(snapshot: Snapshot, rounds: int = 60) -> Snapshot:
    """Apply decisions until one starts and preempts nothing and nothing terminates; a pod
    that started within its project's quotas of both (a quota claim) is never preempted."""
    seq = max((p.seq for p in snapshot.pods), default=0)  # pods' names and seqs are unique
    quotas = {p.name: (p.quota, p.cpu_quota) for p in snapshot.projects}
    claimed: set[str] = set()
    for _ in range(rounds):
        decision = decide(snapshot)
        assert not claimed.intersection(decision.preempt), "a quota claim's pod preempted"
        usage = {p: [0, 0] for p in quotas}
        for p in snapshot.pods:
            usage[p.project][0] += len(p.gpus)
            usage[p.project][1] += p.cpus
        terminating = [p for p in snapshot.pods if p.terminating]
        if not decision.starts and not decision.preempt and not terminating:
            return snapshot
        jobs = {j.uid: j for j in snapshot.jobs}
        pods = [p for p in snapshot.pods if not p.terminating]
        gone = {j: 0 for j in jobs}
        for p in terminating:
            gone[p.job_uid] += 1
        preempted = set(decision.preempt)
        pods = [replace(p, terminating=True) if p.name in preempted else p for p in pods]
        started = {j: 0 for j in jobs}
        for s in decision.starts:
            j = jobs[s.job_uid]
            seq += 1
            pods.append(RunningPod(f"{j.uid}-{s.index}-{seq}", j.uid, j.project, s.gpus, seq,
                                   False, j.cpu))
            started[j.uid] += 1
            usage[j.project][0] += j.gpus
            usage[j.project][1] += j.cpu
            if all(u <= q for u, q in zip(usage[j.project], quotas[j.project])):
                claimed.add(pods[-1].name)
        # a job's pending pods are fresh indexes: those that ended come back as new ones
        new_jobs = []
        for j in jobs.values():
            active = j.active + started[j.uid] - gone[j.uid]
            left = len(j.pending) - started[j.uid] + gone[j.uid]
            new_jobs.append(replace(j, active=active,
                                    pending=tuple(PendingPod(seq + 1 + k, 0) for k in range(left))))
        snapshot = replace(snapshot, jobs=tuple(new_jobs), pods=tuple(pods))
    raise AssertionError(f"no rest after {rounds} cycles: pods preempted back and forth")


@st.composite
def contests(draw: st.DrawFn) -> Snapshot:
    """Projects whose quotas fit in the machine, with one-CPU pods (some with a GPU),
    arriving in turn: the first ones borrow all they can, the later ones claim their quota."""
    n_cpus, n_gpus = draw(st.integers(1, 8)), draw(st.integers(0, 3))
    names = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    cpu_left, gpu_left = n_cpus, n_gpus
    projects = []
    for n in names:
        c, g = draw(st.integers(0, cpu_left)), draw(st.integers(0, gpu_left))
        cpu_left, gpu_left = cpu_left - c, gpu_left - g
        projects.append(ProjectView(n, g, c))
    snapshot = Snapshot(tuple(range(n_gpus)), tuple(projects), (), (), n_cpus)
    for i, n in enumerate(names):
        jobs = [JobView(f"u{i}{k}", f"j{i}{k}", n, draw(st.integers(0, 1)),
                        draw(st.integers(1, 10)), 2 * i + k, 0,
                        tuple(PendingPod(x, 0) for x in range(draw(st.integers(0, 10)))), 1)
                for k in range(draw(st.integers(1, 2)))]
        snapshot = run_to_rest(replace(snapshot, jobs=snapshot.jobs + tuple(jobs)))
    return snapshot


@settings(max_examples=200, deadline=None)
@given(contests())
def test_quota_holders_get_their_quota_and_runs_settle(snapshot: Snapshot) -> None:
    """At rest, a project whose next pod fits in its quotas of both resources has it
    running (the borrowers were preempted); the machine's CPUs are never exceeded."""
    assert snapshot.cpus is not None
    assert sum(p.cpus for p in snapshot.pods) <= snapshot.cpus
    usage = {p.name: [0, 0] for p in snapshot.projects}
    for p in snapshot.pods:
        usage[p.project][0] += len(p.gpus)
        usage[p.project][1] += p.cpus
    for project in snapshot.projects:
        heads = [j for j in sorted(snapshot.jobs, key=lambda j: j.seq)
                 if j.project == project.name and j.pending and j.active < j.parallelism]
        if heads:
            gpus, cpus = usage[project.name]
            assert gpus + heads[0].gpus > project.quota or cpus + 1 > project.cpu_quota
