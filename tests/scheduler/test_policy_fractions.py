"""The scheduling policy with pods that ask for a fraction of one GPU: table-driven cases,
then properties of random snapshots (no GPU past 1, whole-GPU pods alone on theirs, best
fit, quotas and shares counted in fractions) and of whole runs of cycles (quota holders get
their quota back from borrowers of fractions, and the cycles settle)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

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
    fair_shares,
)

from .cases import Case, decided, table

H, Q, T = Fraction(1, 2), Fraction(1, 4), Fraction(3, 10)

# ---------------------------------------------------------------------------------------
# Builders


def job(uid: str, project: str, gpus: int | Fraction, *, parallelism: int = 4, active: int = 0,
        pending: int = 0, seq: int = 0) -> JobView:
    pods = tuple(PendingPod(i, 0) for i in range(active, active + pending))
    return JobView(uid, uid, project, gpus, parallelism, seq, active, pods)


def pod(name: str, project: str, *gpus: int, seq: int, fraction: Fraction | None = None,
        terminating: bool = False) -> RunningPod:
    """A pod named ``<job>-<index>-0`` of the job whose uid is ``<job>``."""
    return RunningPod(name, name.split("-")[0], project, gpus, seq, terminating, 1, fraction)


def snap(gpus: int, quotas: dict[str, int], jobs: Sequence[JobView] = (),
         pods: Sequence[RunningPod] = ()) -> Snapshot:
    projects = tuple(ProjectView(n, q) for n, q in quotas.items())
    return Snapshot(tuple(range(gpus)), projects, tuple(jobs), tuple(pods))


def start(uid: str, index: int, gpu: int, fraction: Fraction) -> Start:
    return Start(uid, index, 0, (gpu,), fraction)


# ---------------------------------------------------------------------------------------
# Table


CASES = [
    Case(
        "two pods of 1/2 share one GPU, the other stays free",
        snap(2, {"a": 1}, [job("j", "a", H, pending=2)]),
        starts=(start("j", 0, 0, H), start("j", 1, 0, H)),
        shares={"a": 1.0},
    ),
    Case(
        "0.3 + 0.3 + 0.3 fit on one GPU, a fourth goes to the next",
        snap(2, {"a": 2}, [job("j", "a", T, pending=4)]),
        starts=(start("j", 0, 0, T), start("j", 1, 0, T), start("j", 2, 0, T),
                start("j", 3, 1, T)),
    ),
    Case(
        "a fourth 0.3 does not fit on a GPU holding three, with no other GPU",
        snap(1, {"a": 1}, [job("j", "a", T, active=3, pending=1)],
             [pod(f"j-{k}-0", "a", 0, seq=k, fraction=T) for k in range(3)]),
    ),
    Case(
        "a fraction never joins a whole-GPU pod",
        snap(2, {"a": 2}, [job("w", "a", 1, active=1, seq=1), job("f", "a", H, pending=1, seq=2)],
             [pod("w-0-0", "a", 0, seq=1)]),
        starts=(start("f", 0, 1, H),),
    ),
    Case(
        "a whole-GPU pod never joins a fraction: it takes an empty GPU",
        snap(2, {"a": 2}, [job("f", "a", H, active=1, seq=1), job("w", "a", 1, pending=1, seq=2)],
             [pod("f-0-0", "a", 0, seq=1, fraction=H)]),
        starts=(Start("w", 0, 0, (1,)),),
    ),
    Case(
        "a whole-GPU pod waits while every GPU holds a fraction, though 1 GPU is free in sum",
        snap(2, {"a": 2}, [job("f", "a", H, active=2, seq=1), job("w", "a", 1, pending=1, seq=2)],
             [pod("f-0-0", "a", 0, seq=1, fraction=H), pod("f-1-0", "a", 1, seq=2, fraction=H)]),
    ),
    Case(
        "best fit: a fraction goes to the GPU with the least room that holds it",
        snap(3, {"a": 3},
             [job("x", "a", Q, active=1, seq=1), job("y", "a", H, active=1, seq=2),
              job("f", "a", H, pending=1, seq=3), job("g", "a", Fraction(3, 4), pending=1, seq=4),
              job("w", "a", 1, pending=1, seq=5)],
             [pod("x-0-0", "a", 0, seq=1, fraction=Q), pod("y-0-0", "a", 1, seq=2, fraction=H)]),
        # f fills GPU 1 (room 1/2) rather than GPU 0 (3/4); g then fills GPU 0; GPU 2 stays
        # whole for w.
        starts=(start("f", 0, 1, H), start("g", 0, 0, Fraction(3, 4)), Start("w", 0, 0, (2,))),
    ),
    Case(
        "quota counts fractions: quota 1 runs two pods of 1/2, kept from a borrower",
        snap(2, {"a": 1, "b": 1},
             [job("ja", "a", H, active=2, pending=2, seq=1), job("jb", "b", 1, pending=1, seq=2)],
             [pod("ja-0-0", "a", 0, seq=1, fraction=H), pod("ja-1-0", "a", 0, seq=2, fraction=H)]),
        # a's share is its quota, 1: its 3rd pod would be lent, so b's whole pod goes first.
        starts=(Start("jb", 0, 0, (1,)),),
        shares={"a": 1.0, "b": 1.0},
    ),
    Case(
        "a project within its quota of fractions is not preempted",
        snap(2, {"a": 1, "b": 1},
             [job("ja", "a", H, active=2, seq=1), job("jb", "b", 1, active=1, pending=1, seq=2)],
             [pod("ja-0-0", "a", 0, seq=3, fraction=H), pod("ja-1-0", "a", 0, seq=4, fraction=H),
              pod("jb-0-0", "b", 1, seq=1)]),
        shares={"a": 1.0, "b": 1.0},
    ),
    Case(
        "over-quota fractions are preempted for a whole GPU, newest first, both on one GPU",
        snap(2, {"a": 1, "b": 1},
             [job("ja", "a", H, active=4, pending=2, seq=1), job("jb", "b", 1, pending=1, seq=2)],
             [pod("ja-0-0", "a", 0, seq=1, fraction=H), pod("ja-1-0", "a", 0, seq=2, fraction=H),
              pod("ja-2-0", "a", 1, seq=3, fraction=H), pod("ja-3-0", "a", 1, seq=4, fraction=H)]),
        preempt=("ja-3-0", "ja-2-0"),
        shares={"a": 1.0, "b": 1.0},
    ),
    Case(
        "one over-quota fraction is preempted for a fraction, not two",
        snap(1, {"a": 0, "b": 1},
             [job("ja", "a", H, active=2, seq=1), job("jb", "b", H, pending=1, seq=2)],
             [pod("ja-0-0", "a", 0, seq=1, fraction=H), pod("ja-1-0", "a", 0, seq=2, fraction=H)]),
        preempt=("ja-1-0",),
        shares={"a": 0.5, "b": 0.5},
    ),
    Case(
        "victims spread over GPUs that stay shared are passed over for ones emptying a GPU",
        snap(2, {"a": 1, "b": 1},
             [job("ja", "a", H, active=4, seq=1), job("jb", "b", 1, pending=1, seq=2)],
             # The newest two sit on different GPUs: taking them empties neither.
             [pod("ja-0-0", "a", 0, seq=1, fraction=H), pod("ja-1-0", "a", 1, seq=2, fraction=H),
              pod("ja-2-0", "a", 0, seq=3, fraction=H), pod("ja-3-0", "a", 1, seq=4, fraction=H)]),
        preempt=("ja-2-0", "ja-0-0"),
        shares={"a": 1.0, "b": 1.0},
    ),
    Case(
        "a quota claim starts before a borrower within its share, which would lose it to it",
        # (the search found the other order preempting p1's pod for p2 every other cycle)
        snap(3, {"p1": 0, "p2": 2},
             [job("u1", "p1", Fraction(3, 4), active=1, pending=1, seq=1),
              job("u2", "p2", T, active=3, pending=1, seq=2)],
             [pod("u1-0-0", "p1", 0, seq=1, fraction=Fraction(3, 4))]
             + [pod(f"u2-{k}-0", "p2", 2, seq=2 + k, fraction=T) for k in range(3)]),
        starts=(start("u2", 3, 1, T),),
        shares={"p1": 1.5, "p2": 1.2},
    ),
    Case(
        "just enough victims: one pod of 1/4 beside the free 1/4 makes room for 1/2",
        snap(1, {"a": 0, "b": 0},
             [job("ja", "a", Q, active=3, pending=1, seq=1), job("jb", "b", H, pending=1, seq=2)],
             [pod(f"ja-{k}-0", "a", 0, seq=k, fraction=Q) for k in range(3)]),
        preempt=("ja-2-0",),
        shares={"a": 0.5, "b": 0.5},
    ),
]


@table(CASES)
def test_decide_with_fractions(case: Case) -> None:
    # the same where CPUs are scheduled, plenty of them, with no CPU quota (the default)
    assert decide(replace(case.snapshot, cpus=64)).starts == case.starts
    check_invariants(case.snapshot, decided(case))


@pytest.mark.parametrize(
    ("snapshot", "match"),
    [
        pytest.param(snap(1, {"a": 1}, [job("j", "a", 0.5, pending=1)]), "float", id="float"),
        pytest.param(snap(2, {"a": 1}, [job("j", "a", Fraction(3, 2), pending=1)]),
                     "non-whole", id="above-1"),
        pytest.param(snap(1, {"a": 1}, [], [pod("x-0-0", "a", 0, seq=1, fraction=H),
                                             pod("y-0-0", "a", 0, seq=2)]),
                     "past its whole", id="beside-whole"),
        pytest.param(snap(1, {"a": 1}, [], [pod("x-0-0", "a", 0, seq=1, fraction=H),
                                             pod("y-0-0", "a", 0, seq=2,
                                                 fraction=Fraction(3, 4))]),
                     "past its whole", id="past-1"),
        pytest.param(snap(2, {"a": 1}, [], [pod("x-0-0", "a", 0, 1, seq=1, fraction=H)]),
                     "one GPU", id="two-gpus"),
    ],
)
def test_contradictory_fractions_are_refused(snapshot: Snapshot, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decide(snapshot)


def test_fair_shares_of_fractional_demands_are_exact() -> None:
    # Ten pods of 0.1 want exactly one GPU: as floats they would want 0.9999999999999999.
    assert fair_shares(1, {"a": 1}, {"a": Fraction(1, 10) * 10}) == {"a": 1.0}


# ---------------------------------------------------------------------------------------
# Properties of one decision

SIZES = (Fraction(1, 4), Fraction(1, 3), Fraction(1, 2), Fraction(3, 4), 1, 2)


def place(load: dict[int, Fraction], gpus: int | Fraction) -> tuple[int, ...] | None:
    """Where a pod would go, as the policy documents it (best fit; lowest empty ids)."""
    if gpus == 0:
        return ()
    if gpus < 1:
        room = [g for g in sorted(load) if load[g] + gpus <= 1]
        return (min(room, key=lambda g: (-load[g], g)),) if room else None
    empty = [g for g in sorted(load) if load[g] == 0]
    return tuple(empty[: int(gpus)]) if len(empty) >= gpus else None


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """1-4 GPUs, 1-3 projects with small quotas, 0-5 jobs of fractions, whole GPUs or none,
    their active pods placed as the policy would (some terminating)."""
    n_gpus = draw(st.integers(1, 4))
    names = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    projects = [ProjectView(n, draw(st.integers(0, 2))) for n in names]
    load = dict.fromkeys(range(n_gpus), Fraction(0))
    jobs: list[JobView] = []
    pods: list[RunningPod] = []
    n_jobs = draw(st.integers(0, 5))
    seqs = draw(st.permutations(range(n_jobs)))
    for i in range(n_jobs):
        project = draw(st.sampled_from(names))
        gpus = draw(st.sampled_from((0, *SIZES)))
        parallelism = draw(st.integers(1, 5))
        active = 0
        for k in range(draw(st.integers(0, parallelism))):
            held = place(load, gpus)
            if held is None:
                break
            each = Fraction(gpus) if gpus < 1 else Fraction(1)
            for g in held:
                load[g] += each
            fraction = each if 0 < each < 1 else None
            terminating = draw(st.integers(0, 5)) == 0
            pods.append(RunningPod(f"j{i}-{k}-0", f"u{i}", project, held, 0, terminating, 1,
                                   fraction))
            active += 1
        pending = tuple(PendingPod(active + k, 0) for k in range(draw(st.integers(0, 6))))
        jobs.append(JobView(f"u{i}", f"j{i}", project, gpus, parallelism, seqs[i], active,
                            pending))
    order = draw(st.permutations(range(len(pods))))
    pods = [replace(p, seq=order[n]) for n, p in enumerate(pods)]
    return Snapshot(tuple(range(n_gpus)), tuple(projects), tuple(jobs), tuple(pods))


def held_by(p: RunningPod) -> Fraction:
    return (p.fraction or Fraction(1)) * len(p.gpus)


def next_pods(snapshot: Snapshot, decision: Decision) -> dict[str, JobView]:
    """Per project, the job of its first pod that may start but did not this cycle."""
    started = {s.job_uid: 0 for s in decision.starts}
    for s in decision.starts:
        started[s.job_uid] += 1
    heads: dict[str, JobView] = {}
    for j in sorted(snapshot.jobs, key=lambda j: j.seq):
        room = min(len(j.pending), max(0, j.parallelism - j.active)) - started.get(j.uid, 0)
        if j.gpus and room > 0:
            heads.setdefault(j.project, j)
    return heads


def check_invariants(snapshot: Snapshot, decision: Decision) -> None:
    jobs = {j.uid: j for j in snapshot.jobs}
    load = dict.fromkeys(snapshot.gpus, Fraction(0))
    whole: set[int] = set()
    for p in snapshot.pods:
        for g in p.gpus:
            load[g] += p.fraction or 1
        if p.fraction is None:
            whole.update(p.gpus)
    # Each start: where the documented placement puts it, given the starts before it; so
    # no GPU past 1, whole-GPU pods on empty GPUs only, fractions best fit.
    usage: dict[str, Fraction] = {}
    for p in snapshot.pods:
        usage[p.project] = usage.get(p.project, Fraction(0)) + held_by(p)
    for s in decision.starts:
        gpus = jobs[s.job_uid].gpus
        assert s.fraction == (gpus if 0 < gpus < 1 else None)
        assert s.gpus == place(load, gpus)
        for g in s.gpus:
            assert g not in whole
            load[g] += s.fraction or 1
            assert load[g] <= 1
        if s.fraction is None:
            whole.update(s.gpus)
        usage[jobs[s.job_uid].project] = usage.get(jobs[s.job_uid].project, Fraction(0)) + gpus
    # Within parallelism, in order.
    per_job: dict[str, list[int]] = {}
    for s in decision.starts:
        per_job.setdefault(s.job_uid, []).append(s.index)
    for uid, indexes in per_job.items():
        j = jobs[uid]
        assert j.active + len(indexes) <= j.parallelism
        assert indexes == [p.index for p in j.pending[: len(indexes)]]
    # Shares as fair_shares computes them from the demands, counted in fractions.
    quotas = {p.name: p.quota for p in snapshot.projects}
    demands: dict[str, Fraction] = {}
    for j in snapshot.jobs:
        want = j.gpus * min(j.parallelism, j.active + len(j.pending))
        demands[j.project] = demands.get(j.project, Fraction(0)) + want
    assert decision.shares == fair_shares(
        len(snapshot.gpus), {**dict.fromkeys(usage, 0), **quotas}, demands)
    # Victims: running pods of projects over quota and share, each left with more than its
    # quota and its share less its smallest pod (so its next pod is over both: it never
    # preempts back; for whole pods, at least its quota). Where some project's next pod is
    # within its quota (a quota claim), victims need only be over quota and keep more than
    # their quota less their smallest pod.
    by_name = {p.name: p for p in snapshot.pods}
    assert len(set(decision.preempt)) == len(decision.preempt)
    shares = {p: Fraction(s).limit_denominator(1000) for p, s in decision.shares.items()}
    claim = any(usage.get(project, 0) + head.gpus <= quotas.get(project, 0)
                for project, head in next_pods(snapshot, decision).items())
    left = dict(usage)
    for name in decision.preempt:
        victim = by_name[name]
        assert not victim.terminating
        assert usage[victim.project] > quotas.get(victim.project, 0)
        assert claim or usage[victim.project] > shares[victim.project]
        left[victim.project] -= held_by(victim)
    for project in {by_name[n].project for n in decision.preempt}:
        grain = min([Fraction(1)]
                    + [Fraction(j.gpus) for j in snapshot.jobs if j.project == project and j.gpus]
                    + [p.fraction for p in snapshot.pods
                       if p.project == project and p.fraction is not None])
        assert left[project] + grain > quotas.get(project, 0)
        assert claim or left[project] + grain > shares[project]
        if grain == 1:
            assert left[project] >= quotas.get(project, 0)


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_invariants_hold_for_any_snapshot_with_fractions(snapshot: Snapshot) -> None:
    check_invariants(snapshot, decide(snapshot))


@settings(max_examples=200, deadline=None)
@given(snapshots(), st.randoms(use_true_random=False))
def test_decision_with_fractions_ignores_input_order(snapshot: Snapshot,
                                                     rnd: random.Random) -> None:
    decision = decide(snapshot)
    reordered = Snapshot(
        tuple(rnd.sample(snapshot.gpus, len(snapshot.gpus))),
        tuple(rnd.sample(snapshot.projects, len(snapshot.projects))),
        tuple(rnd.sample(snapshot.jobs, len(snapshot.jobs))),
        tuple(rnd.sample(snapshot.pods, len(snapshot.pods))),
    )
    assert decide(reordered) == decision


# ---------------------------------------------------------------------------------------
# Properties of whole runs: cycle after cycle, preempted pods end before the next one


def run_to_rest(snapshot: Snapshot, rounds: int = 80, one_by_one: bool = False) -> Snapshot:
    """Apply decisions until one starts and preempts nothing and nothing terminates. The
    preempted pods end before the next cycle, or (``one_by_one``) one a cycle, oldest
    first, as real pods do: each end is a cycle of its own.

    No ping-pong: a pod that started within its project's quota (a quota claim, whether it
    took the place of preempted pods or found it free) is never preempted in a later cycle:
    what a claim reclaims stays reclaimed, and the cycles reach a fixed point.
    """
    seq = max((p.seq for p in snapshot.pods), default=0)
    quotas = {p.name: p.quota for p in snapshot.projects}
    claimed: set[str] = set()
    for _ in range(rounds):
        decision = decide(snapshot)
        assert not claimed.intersection(decision.preempt), "a quota claim's pod preempted"
        terminating = sorted((p for p in snapshot.pods if p.terminating), key=lambda p: p.seq)
        if not decision.starts and not decision.preempt and not terminating:
            return snapshot
        ending = {p.name for p in terminating[:1 if one_by_one else None]}
        terminating = [p for p in terminating if p.name in ending]
        jobs = {j.uid: j for j in snapshot.jobs}
        usage = dict.fromkeys(quotas, Fraction(0))
        for p in snapshot.pods:
            usage[p.project] += held_by(p)
        gone = dict.fromkeys(jobs, 0)
        for p in terminating:
            gone[p.job_uid] += 1
        preempted = set(decision.preempt)
        pods = [replace(p, terminating=True) if p.name in preempted else p
                for p in snapshot.pods if p.name not in ending]
        started = dict.fromkeys(jobs, 0)
        for s in decision.starts:
            j = jobs[s.job_uid]
            seq += 1
            pods.append(RunningPod(f"{j.uid}-{s.index}-{seq}", j.uid, j.project, s.gpus, seq,
                                   False, 1, s.fraction))
            started[j.uid] += 1
            usage[j.project] += j.gpus
            if usage[j.project] <= quotas[j.project]:
                claimed.add(pods[-1].name)
        new_jobs = []
        for j in jobs.values():
            left = len(j.pending) - started[j.uid] + gone[j.uid]
            new_jobs.append(replace(
                j, active=j.active + started[j.uid] - gone[j.uid],
                pending=tuple(PendingPod(seq + 1 + k, 0) for k in range(left))))
        snapshot = replace(snapshot, jobs=tuple(new_jobs), pods=tuple(pods))
    raise AssertionError(f"no rest after {rounds} cycles: pods preempted back and forth")


@st.composite
def contests(draw: st.DrawFn) -> Snapshot:
    """Projects whose quotas fit in the machine, each with jobs of one size (a fraction or one
    GPU), arriving in turn: the first borrow all they can, the later claim their quota. Half
    of them schedule CPUs too, plenty of them and no CPU quota (the local cluster's default:
    every pod borrows its CPU, and its GPUs within the GPU quota are still a claim)."""
    n_gpus = draw(st.integers(1, 4))
    cpus = draw(st.sampled_from([None, 64]))
    one_by_one = draw(st.booleans())
    names = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    gpu_left = n_gpus
    projects = []
    for n in names:
        g = draw(st.integers(0, gpu_left))
        gpu_left -= g
        projects.append(ProjectView(n, g))
    snapshot = Snapshot(tuple(range(n_gpus)), tuple(projects), (), (), cpus)
    for i, n in enumerate(names):
        size = draw(st.sampled_from(SIZES[:-1]))
        jobs = [JobView(f"u{i}{k}", f"j{i}{k}", n, size, draw(st.integers(1, 10)), 2 * i + k, 0,
                        tuple(PendingPod(x, 0) for x in range(draw(st.integers(0, 10)))))
                for k in range(draw(st.integers(1, 2)))]
        snapshot = run_to_rest(replace(snapshot, jobs=snapshot.jobs + tuple(jobs)),
                               one_by_one=one_by_one)
    return snapshot


def reclaimable(snapshot: Snapshot, claimant: str) -> dict[int, Fraction]:
    """Per GPU, how much of it a quota claim of ``claimant`` may take back: the pods on it of
    other projects over their quota, as many of each as leave it more than its quota less one
    of its pods (the projects of a contest each have pods of one size)."""
    quotas = {p.name: p.quota for p in snapshot.projects}
    usage = dict.fromkeys(quotas, Fraction(0))
    size: dict[str, Fraction] = {}
    for p in snapshot.pods:
        usage[p.project] += held_by(p)
        size[p.project] = held_by(p)
    out = dict.fromkeys(snapshot.gpus, Fraction(0))
    for g in snapshot.gpus:
        for project, each in size.items():
            if project == claimant:
                continue
            on = sum(1 for p in snapshot.pods if p.project == project and g in p.gpus)
            spare = 0  # pods it may lose: while it keeps more than its quota less one pod
            while spare < on and usage[project] - spare * each > quotas[project]:
                spare += 1
            out[g] += spare * (each if each < 1 else 1)
    return out


@settings(max_examples=1000, deadline=None)
@given(contests())
def test_quota_holders_get_their_fractions_and_runs_settle(snapshot: Snapshot) -> None:
    """At rest (and run_to_rest saw no quota claim's pod preempted on the way), a project
    whose next pod fits in its quota has it running unless no GPU would hold it once every
    pod there that the claim may take is gone: its own pods and those of projects within
    their quota stay (fragmentation may leave a borrower below its fair share: in-quota
    beats over-quota). No GPU is past 1."""
    load = dict.fromkeys(snapshot.gpus, Fraction(0))
    usage = {p.name: Fraction(0) for p in snapshot.projects}
    for p in snapshot.pods:
        usage[p.project] += held_by(p)
        for g in p.gpus:
            load[g] += p.fraction or 1
    assert all(n <= 1 for n in load.values())
    for project in snapshot.projects:
        heads = [j for j in sorted(snapshot.jobs, key=lambda j: j.seq)
                 if j.project == project.name and j.pending and j.active < j.parallelism]
        if heads and usage[project.name] + heads[0].gpus <= project.quota:
            taken = reclaimable(snapshot, project.name)
            after = {g: load[g] - taken[g] for g in snapshot.gpus}
            assert place(after, heads[0].gpus) is None


def fragmented(pods: list[tuple[str, str, int, Fraction]], quotas: dict[str, int],
               head: tuple[str, Fraction, int]) -> Snapshot:
    """Two GPUs; running pods (name, project, GPU, fraction); one pending head pod."""
    jobs = {}
    for _, project, _, fraction in pods:
        uid = f"u-{project}"
        prev = jobs.get(uid)
        jobs[uid] = JobView(uid, uid, project, fraction, 8, len(jobs),
                            (prev.active if prev else 0) + 1, ())
    project, fraction, seq = head
    uid = f"u-{project}"
    active = jobs[uid].active if uid in jobs else 0
    jobs[uid] = JobView(uid, uid, project, fraction, 8, seq, active, (PendingPod(9, 0),))
    running = tuple(RunningPod(name, f"u-{project}", project, (gpu,), k + 1, False, 1, fraction)
                    for k, (name, project, gpu, fraction) in enumerate(pods))
    return Snapshot((0, 1), tuple(ProjectView(n, q) for n, q in quotas.items()),
                    tuple(jobs.values()), running)


def test_a_borrower_of_fractions_over_its_quota_loses_a_pod_to_a_quota_claim() -> None:
    """p1 holds 3/4 on each GPU (1.5, quota 1); p2 claims 3/4 within its quota of 1. Losing
    one pod leaves p1 under its quota by less than one of its pods: it must, or the quota p1
    borrows past is held from p2 (the search found this; p1 kept both pods)."""
    three_quarters = Fraction(3, 4)
    snapshot = fragmented([("a", "p1", 0, three_quarters), ("b", "p1", 1, three_quarters)],
                          {"p1": 1, "p2": 1}, ("p2", three_quarters, 5))
    assert list(decide(snapshot).preempt) == ["b"]


def test_fragmentation_a_quota_claim_reclaims_from_a_borrower_below_its_share() -> None:
    """p0 (quota 0) holds 1/3 twice on GPU 0, p1 (quota 2) 3/4 on GPU 1 and claims another
    3/4 within its quota: only both of p0's pods make room, and taking the second puts p0
    below its share (0.5; shares assume GPUs divide). In-quota beats over-quota: both go,
    and p0, within its quota, cannot preempt p1 back (a claim's pods are never victims)."""
    third, three_quarters = Fraction(1, 3), Fraction(3, 4)
    snapshot = fragmented([("a", "p0", 0, third), ("b", "p0", 0, third),
                           ("c", "p1", 1, three_quarters)],
                          {"p0": 0, "p1": 2}, ("p1", three_quarters, 5))
    assert sorted(decide(snapshot).preempt) == ["a", "b"]
    rest = run_to_rest(snapshot)
    assert sorted((p.project, p.gpus) for p in rest.pods) == [("p1", (0,)), ("p1", (1,))]
    # the claim is per resource: where CPUs are scheduled and the CPU quotas are 0 (the
    # default), every pod borrows its CPU, and the GPUs within p1's GPU quota are a claim
    assert sorted(decide(replace(snapshot, cpus=8)).preempt) == ["a", "b"]
