"""The scheduling policy: table-driven cases over small snapshots, then properties of
random ones (no GPU given twice, parallelism and quotas kept, work conserved, preemption
when and only when the rules allow it, the same decision whatever the order of inputs)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import podsweep.scheduler as scheduler
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

# ---------------------------------------------------------------------------------------
# Builders


def job(
    uid: str,
    project: str,
    *,
    gpus: int = 1,
    parallelism: int = 1,
    active: int = 0,
    pending: int | Sequence[int | tuple[int, int]] = 0,
    seq: int = 0,
) -> JobView:
    """A job; ``pending`` is a count (the indexes after the active ones) or the indexes,
    each an index or an (index, attempt) pair."""
    if isinstance(pending, int):
        pending = range(active, active + pending)
    pods = tuple(
        PendingPod(*p) if isinstance(p, tuple) else PendingPod(p, 0) for p in pending
    )
    return JobView(uid, uid, project, gpus, parallelism, seq, active, pods)


def pod(name: str, project: str, *gpus: int, seq: int, terminating: bool = False) -> RunningPod:
    """A pod named ``<job>-<index>-<attempt>``, of the job whose uid is ``<job>``."""
    return RunningPod(name, name.split("-")[0], project, gpus, seq, terminating)


def pods_on(
    job_uid: str, project: str, *gpus: int, seqs: Sequence[int] = ()
) -> list[RunningPod]:
    """One 1-GPU pod of the job on each GPU, ``<job>-<k>-0``; started in GPU order unless
    ``seqs`` says otherwise."""
    seqs = seqs or [g + 1 for g in gpus]
    return [pod(f"{job_uid}-{k}-0", project, g, seq=seqs[k]) for k, g in enumerate(gpus)]


def snap(
    gpus: int | Sequence[int],
    quotas: dict[str, int],
    jobs: Sequence[JobView] = (),
    pods: Sequence[RunningPod] = (),
) -> Snapshot:
    ids = tuple(range(gpus)) if isinstance(gpus, int) else tuple(gpus)
    projects = tuple(ProjectView(name, quota) for name, quota in quotas.items())
    return Snapshot(ids, projects, tuple(jobs), tuple(pods))


def start(job_uid: str, index: int, *gpus: int, attempt: int = 0) -> Start:
    return Start(job_uid, index, attempt, gpus)


# ---------------------------------------------------------------------------------------
# The walk-through: team-a sweeps alone, then team-b claims its quota back.

TEAM_A_ALONE = snap(
    4, {"team-a": 2, "team-b": 2}, [job("hpo1", "team-a", parallelism=3, pending=12)]
)

TEAM_B_ARRIVES = snap(
    4,
    {"team-a": 2, "team-b": 2},
    [
        job("hpo1", "team-a", parallelism=3, active=3, pending=9, seq=1),
        job("hpo2", "team-b", parallelism=2, pending=2, seq=2),
    ],
    [
        pod("hpo1-0-0", "team-a", 0, seq=1),
        pod("hpo1-1-0", "team-a", 1, seq=2),
        pod("hpo1-2-0", "team-a", 2, seq=3),
    ],
)

PREEMPTED_POD_TERMINATING = snap(
    4,
    {"team-a": 2, "team-b": 2},
    [
        job("hpo1", "team-a", parallelism=3, active=3, pending=9, seq=1),
        job("hpo2", "team-b", parallelism=2, active=1, pending=[1], seq=2),
    ],
    [
        pod("hpo1-0-0", "team-a", 0, seq=1),
        pod("hpo1-1-0", "team-a", 1, seq=2),
        pod("hpo1-2-0", "team-a", 2, seq=3, terminating=True),
        pod("hpo2-0-0", "team-b", 3, seq=4),
    ],
)

PREEMPTED_POD_GONE = snap(
    4,
    {"team-a": 2, "team-b": 2},
    [
        job("hpo1", "team-a", parallelism=3, active=2, pending=[(2, 1), *range(3, 12)], seq=1),
        job("hpo2", "team-b", parallelism=2, active=1, pending=[1], seq=2),
    ],
    [
        pod("hpo1-0-0", "team-a", 0, seq=1),
        pod("hpo1-1-0", "team-a", 1, seq=2),
        pod("hpo2-0-0", "team-b", 3, seq=4),
    ],
)


CASES = [
    Case(
        "walk-through: team-a alone borrows team-b's idle GPUs up to its parallelism",
        TEAM_A_ALONE,
        starts=(start("hpo1", 0, 0), start("hpo1", 1, 1), start("hpo1", 2, 2)),
        shares={"team-a": 3.0, "team-b": 0.0},
    ),
    Case(
        "walk-through: team-b submits; newest team-a pod preempted, team-b takes the free GPU",
        TEAM_B_ARRIVES,
        starts=(start("hpo2", 0, 3),),
        preempt=("hpo1-2-0",),
        shares={"team-a": 2.0, "team-b": 2.0},
    ),
    Case(
        "walk-through: the preempted pod is terminating, so nothing more is preempted",
        PREEMPTED_POD_TERMINATING,
        shares={"team-a": 2.0, "team-b": 2.0},
    ),
    Case(
        "walk-through: the preempted pod exited; its GPU goes to team-b, not back to team-a",
        PREEMPTED_POD_GONE,
        starts=(start("hpo2", 1, 2),),
    ),
    Case(
        "FIFO within a project: an earlier 2-GPU job blocks a later 1-GPU job",
        snap(
            2,
            {"a": 2},
            # Listed out of order on purpose: submit order is seq, not the tuple.
            [
                job("small", "a", gpus=1, pending=1, seq=3),
                job("big", "a", gpus=2, pending=1, seq=2),
                job("old", "a", gpus=1, active=1, seq=1),
            ],
            [pod("old-0-0", "a", 0, seq=1)],
        ),
    ),
    Case(
        "FIFO within a project: a job already at its parallelism does not block later ones",
        snap(
            2,
            {"a": 2},
            [job("old", "a", active=1, pending=3, seq=1), job("new", "a", pending=1, seq=2)],
            [pod("old-0-0", "a", 0, seq=1)],
        ),
        starts=(start("new", 0, 1),),
    ),
    Case(
        "first submitted, first served across jobs; lowest pending position first",
        snap(
            3,
            {"a": 3},
            [job("j2", "a", parallelism=2, pending=[5, 1], seq=2),
             job("j1", "a", pending=1, seq=1)],
        ),
        starts=(start("j1", 0, 0), start("j2", 5, 1), start("j2", 1, 2)),
    ),
    Case(
        "parallelism respected: active pods count",
        snap(
            8, {"a": 8}, [job("j", "a", parallelism=3, active=1, pending=5)], pods_on("j", "a", 0)
        ),
        starts=(start("j", 1, 1), start("j", 2, 2)),
    ),
    Case(
        "pods without GPUs start up to parallelism on a machine with none",
        snap(0, {"a": 0}, [job("cpu", "a", gpus=0, parallelism=3, pending=5)]),
        starts=(start("cpu", 0), start("cpu", 1), start("cpu", 2)),
        shares={"a": 0.0},
    ),
    Case(
        "pods without GPUs are not held back by an earlier job waiting for GPUs",
        snap(
            1,
            {"a": 1},
            [job("big", "a", gpus=2, pending=1, seq=1), job("cpu", "a", gpus=0, pending=1, seq=2)],
        ),
        starts=(start("cpu", 0),),
    ),
    Case(
        "lowest free GPU ids, whatever the order of the machine's ids",
        snap(
            (5, 3, 1, 0, 2, 4),
            {"a": 6},
            [job("j", "a", gpus=2, parallelism=2, active=1, pending=1)],
            [pod("x-0-0", "a", 0, 2, 3, seq=1)],
        ),
        starts=(start("j", 1, 1, 4),),
    ),
    Case(
        "the lowest usage/share ratio is served first, ties by name",
        snap(3, {"b": 1, "a": 1}, [job("jb", "b", pending=3, parallelism=3, seq=1),
                                   job("ja", "a", pending=3, parallelism=3, seq=2)]),
        starts=(start("ja", 0, 0), start("jb", 0, 1), start("ja", 1, 2)),
        shares={"a": 1.5, "b": 1.5},
    ),
    Case(
        "the lowest usage/share ratio is served first, not the lowest usage",
        snap(
            6,
            {"a": 4, "b": 1},
            [job("ja", "a", parallelism=6, active=2, pending=4),
             job("jb", "b", parallelism=3, active=1, pending=2)],
            [*pods_on("ja", "a", 0, 1), *pods_on("jb", "b", 2)],
        ),
        # Shares a=4.8, b=1.2: a at 2, 3 and 4 GPUs is still below b's 1/1.2 (or ties it).
        starts=(start("ja", 2, 3), start("ja", 3, 4), start("ja", 4, 5)),
        shares={"a": 4.8, "b": 1.2},
    ),
    Case(
        "a project within its quota is never preempted, even when quotas oversubscribe",
        snap(
            4,
            {"a": 2, "b": 2, "c": 2},
            [job("ja", "a", parallelism=2, active=2), job("jb", "b", parallelism=2, active=2),
             job("jc", "c", pending=1)],
            [pod("ja-0-0", "a", 0, seq=1), pod("ja-1-0", "a", 1, seq=2),
             pod("jb-0-0", "b", 2, seq=3), pod("jb-1-0", "b", 3, seq=4)],
        ),
        shares={"a": 2.0, "b": 2.0, "c": 1.0},
    ),
    Case(
        "a project within its quota is never preempted, even far over its share",
        snap(
            2,
            {"a": 2, "b": 2},
            [job("jb", "b", pending=1)],
            # A deleted job's pods, still running: no demand left, so a share of 0.
            [pod("gone-0-0", "a", 0, seq=1), pod("gone-1-0", "a", 1, seq=2)],
        ),
        shares={"a": 0.0, "b": 1.0},
    ),
    Case(
        "a victim is never pushed below its quota",
        snap(
            4,
            {"a": 2, "b": 2},
            [job("ja", "a", gpus=3, active=1), job("jb", "b", parallelism=2, active=1, pending=1)],
            [pod("ja-0-0", "a", 0, 1, 2, seq=1), pod("jb-0-0", "b", 3, seq=2)],
        ),
        shares={"a": 2.0, "b": 2.0},
    ),
    Case(
        "a victim is never pushed below its quota, even where its share is lower",
        snap(
            4,
            {"a": 3, "b": 1},
            [job("ja", "a", gpus=2, active=1), job("jb", "b", pending=1)],
            # Pods left by a job no longer in the snapshot: usage 4, share 2, quota 3.
            [pod("ja-0-0", "a", 0, 1, seq=1), pod("gone-0-0", "a", 2, 3, seq=2)],
        ),
        shares={"a": 2.0, "b": 1.0},
    ),
    Case(
        "no preemption when the requester's next pod would take it over its fair share",
        snap(
            5,
            {"a": 1, "b": 1},
            [job("ja", "a", parallelism=3, active=3),
             job("jb", "b", parallelism=4, active=2, pending=2)],
            [*pods_on("ja", "a", 0, 1, 2), *pods_on("jb", "b", 3, 4)],
        ),
        shares={"a": 2.5, "b": 2.5},
    ),
    Case(
        "no preemption when the requester is already at its fair share",
        snap(
            4,
            {"p": 2, "v": 0, "c": 2},
            [job("jp", "p", parallelism=3, active=2, pending=1),
             job("jv", "v", parallelism=2, active=2), job("jc", "c", gpus=5, pending=1)],
            # c's pod is too big to run, but its demand takes the GPUs p could borrow.
            [*pods_on("jp", "p", 0, 1), *pods_on("jv", "v", 2, 3)],
        ),
        shares={"p": 2.0, "v": 0.0, "c": 2.0},
    ),
    Case(
        "victims come from the most over-share project, newest pod first",
        snap(
            6,
            {"a": 0, "b": 0, "c": 2},
            [job("ja", "a", active=1), job("jb", "b", parallelism=3, active=3),
             job("jc", "c", parallelism=3, active=2, pending=1)],
            [*pods_on("ja", "a", 0, seqs=[9]), *pods_on("jb", "b", 1, 2, 3, seqs=[1, 3, 2]),
             *pods_on("jc", "c", 4, 5)],
        ),
        preempt=("jb-1-0",),
        shares={"a": 1.0, "b": 2.0, "c": 3.0},
    ),
    Case(
        "several victims spread over the projects most over their shares at each pick",
        snap(
            9,
            {"a": 0, "b": 0, "c": 3},
            [job("ja", "a", parallelism=4, active=4), job("jb", "b", parallelism=5, active=5),
             job("jc", "c", gpus=2, pending=1)],
            [*pods_on("ja", "a", 0, 1, 2, 3), *pods_on("jb", "b", 4, 5, 6, 7, 8)],
        ),
        # b is 1.5 over its share of 3.5, a 0.5: after one of b's pods they tie, and a goes
        # by name, rather than b losing a second pod.
        preempt=("jb-4-0", "ja-3-0"),
        shares={"a": 3.5, "b": 3.5, "c": 2.0},
    ),
    Case(
        "a quota-0 project's borrowed GPU is reclaimed",
        snap(
            3,
            {"a": 0, "b": 1},
            [job("ja", "a", parallelism=2, active=2),
             job("jb", "b", parallelism=2, active=1, pending=1)],
            [*pods_on("ja", "a", 0, 1), *pods_on("jb", "b", 2)],
        ),
        preempt=("ja-1-0",),
        shares={"a": 1.0, "b": 2.0},
    ),
    Case(
        "two requesters never count on the same terminating pod's GPU",
        snap(
            4,
            {"a": 0, "b": 1, "c": 1},
            [job("ja", "a", parallelism=4, active=4), job("jb", "b", pending=1),
             job("jc", "c", pending=1)],
            [*pods_on("ja", "a", 0, 1, 2), pod("ja-3-0", "a", 3, seq=4, terminating=True)],
        ),
        preempt=("ja-2-0",),
    ),
    Case(
        "a free GPU is kept for a project below its share rather than lent out again",
        snap(
            4,
            {"a": 2, "b": 2},
            [job("ja", "a", parallelism=4, active=3, pending=1), job("jb", "b", gpus=2, pending=1)],
            pods_on("ja", "a", 0, 1, 2),
        ),
        preempt=("ja-2-0",),
        shares={"a": 2.0, "b": 2.0},
    ),
    Case(
        "a project at its share starts nothing while one below its share waits",
        snap(
            4,
            {"r": 2, "s": 1, "c": 1, "o": 0},
            [job("jr", "r", gpus=2, pending=1), job("js", "s", parallelism=2, active=1, pending=1),
             job("jc", "c", gpus=5, pending=1)],
            [pod("js-0-0", "s", 0, seq=1), pod("gone-0-0", "o", 1, 2, seq=2, terminating=True)],
        ),
        shares={"r": 2.0, "s": 1.0, "c": 1.0, "o": 0.0},
    ),
    Case(
        "a project at its share that waits holds no GPU back",
        snap(
            4,
            {"a": 2, "b": 0, "c": 2},
            [job("ja", "a", gpus=2, pending=1), job("jb", "b", parallelism=2, active=1, pending=1),
             job("jc", "c", gpus=5, pending=1)],
            # a resubmitted a job; the old one's pod is still terminating.
            [pod("old-0-0", "a", 0, 1, seq=1, terminating=True), pod("jb-0-0", "b", 2, seq=2)],
        ),
        starts=(start("jb", 1, 3),),
        shares={"a": 2.0, "b": 0.0, "c": 2.0},
    ),
    Case(
        "projects without a share take idle GPUs, the one using fewer first",
        snap(
            3,
            {"a": 0, "b": 0, "c": 1},
            [job("ja", "a", parallelism=2, active=1, pending=1), job("jb", "b", pending=1),
             job("jc", "c", gpus=5, pending=1)],
            [pod("ja-0-0", "a", 0, seq=1)],
        ),
        starts=(start("jb", 0, 1), start("ja", 1, 2)),
        shares={"a": 0.0, "b": 0.0, "c": 3.0},
    ),
    Case(
        "no preemption unless the victims cover the whole pod",
        snap(
            2,
            {"a": 0, "b": 3},
            [job("ja", "a", active=1), job("jb1", "b", active=1, seq=1),
             job("jb2", "b", gpus=2, pending=1, seq=2)],
            [pod("ja-0-0", "a", 0, seq=1), pod("jb1-0-0", "b", 1, seq=2)],
        ),
        shares={"a": 0.0, "b": 3.0},
    ),
    Case(
        "a pod larger than the machine holds no GPU back",
        snap(
            4,
            {"a": 2, "b": 2},
            [job("ja", "a", parallelism=4, active=3, pending=1), job("jb", "b", gpus=8, pending=1)],
            pods_on("ja", "a", 0, 1, 2),
        ),
        starts=(start("ja", 3, 3),),
    ),
    Case(
        "a project missing from the snapshot's projects has quota 0",
        snap(2, {"a": 1}, [job("ja", "a", pending=2), job("jg", "ghost", pending=1)]),
        starts=(start("ja", 0, 0), start("jg", 0, 1)),
        shares={"a": 1.0, "ghost": 1.0},
    ),
]


@table(CASES)
def test_decide(case: Case) -> None:
    check_invariants(case.snapshot, decided(case))


@pytest.mark.parametrize(
    ("total", "quotas", "demands", "want"),
    [
        pytest.param(6, {"a": 1, "b": 2}, {"a": 5, "b": 5}, {"a": 2, "b": 4}, id="proportional"),
        pytest.param(4, {"a": 3, "b": 1}, {"a": 1, "b": 5}, {"a": 1, "b": 3}, id="demand<quota"),
        pytest.param(4, {"a": 2, "b": 2}, {"a": 0, "b": 1}, {"a": 0, "b": 1}, id="demand-met"),
        pytest.param(
            10, {"a": 1, "b": 1, "c": 2}, {"a": 2, "b": 10, "c": 10},
            {"a": 2, "b": 8 / 3, "c": 16 / 3}, id="refill-after-capping",
        ),
        pytest.param(4, {"a": 0, "b": 1}, {"a": 4, "b": 4}, {"a": 0, "b": 4}, id="quota0-last"),
        pytest.param(
            4, {"a": 0, "b": 0, "c": 2}, {"a": 4, "b": 1, "c": 1}, {"a": 2, "b": 1, "c": 1},
            id="quota0-equal-split",
        ),
        pytest.param(2, {"a": 2, "b": 2}, {"a": 3, "b": 2}, {"a": 2, "b": 2}, id="oversubscribed"),
        pytest.param(0, {"a": 1}, {"b": 3}, {"a": 0, "b": 0}, id="no-gpus"),
        pytest.param(3, {"a": 1}, {"b": 2}, {"a": 0, "b": 2}, id="names-from-either"),
    ],
)
def test_fair_shares(
    total: int, quotas: dict[str, int], demands: dict[str, int], want: dict[str, float]
) -> None:
    assert fair_shares(total, quotas, demands) == pytest.approx(want)


def test_contradictory_snapshot_is_refused() -> None:
    twice = snap(2, {"a": 1}, [], [pod("x-0-0", "a", 0, seq=1), pod("y-0-0", "a", 0, seq=2)])
    with pytest.raises(ValueError, match="GPU held by a pod"):
        decide(twice)
    with pytest.raises(ValueError, match="project"):
        decide(replace(TEAM_A_ALONE, projects=(*TEAM_A_ALONE.projects, ProjectView("team-a", 1))))


def test_pods_of_one_name_in_two_projects_are_accepted() -> None:
    # Job names are unique per project only, so pod names can repeat across projects.
    same_name = snap(
        2,
        {"a": 0, "b": 0, "c": 2},
        [job("ua", "a", active=1), job("ub", "b", active=1), job("uc", "c", pending=1)],
        [RunningPod("hpo1-0-0", "ua", "a", (0,), 1), RunningPod("hpo1-0-0", "ub", "b", (1,), 2)],
    )
    assert decide(same_name).preempt == ("hpo1-0-0",)


def test_public_api() -> None:
    assert set(scheduler.__all__) == {
        "Decision", "JobView", "PendingPod", "ProjectView", "RunningPod", "Snapshot", "Start",
        "decide", "fair_shares",
    }


# ---------------------------------------------------------------------------------------
# Properties of random snapshots


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """0-8 GPUs with scattered ids, 1-4 projects, 0-5 jobs whose active pods hold disjoint
    GPUs (some terminating), and a few pods of jobs already gone.

    Half of them are crowded: small quotas, the first jobs running all the pods they may on
    borrowed GPUs, the later ones just submitted, so that preemption has work to do.
    """
    crowded = draw(st.booleans())
    n_gpus = draw(st.integers(4, 8) if crowded else st.integers(0, 8))
    ids = draw(st.lists(st.integers(0, 15), min_size=n_gpus, max_size=n_gpus, unique=True))
    names = [f"p{i}" for i in range(draw(st.integers(1, 4)))]
    projects = [ProjectView(name, draw(st.integers(0, 2 if crowded else 4))) for name in names]
    n_jobs = draw(st.integers(0, 5))
    seqs = draw(st.permutations(range(n_jobs)))
    free = list(ids)
    jobs: list[JobView] = []
    pods: list[RunningPod] = []

    def hold(name: str, uid: str, project: str, gpus: int, terminating: bool) -> bool:
        if len(free) < gpus:
            return False
        held = tuple(free[:gpus])
        del free[:gpus]
        pods.append(RunningPod(name, uid, project, held, 0, terminating))
        return True

    for i in range(n_jobs):
        project = draw(st.sampled_from(names))
        gpus = draw(st.integers(0, 3))
        parallelism = draw(st.integers(1, 4))
        if crowded:
            running = parallelism if 2 * i < n_jobs else 0
        else:
            running = draw(st.sampled_from([parallelism, 0, draw(st.integers(0, parallelism))]))
        active = 0
        for k in range(running):
            terminating = draw(st.integers(0, 7 if crowded else 3)) == 0
            if gpus and not hold(f"j{i}-{k}-0", f"u{i}", project, gpus, terminating):
                break
            active += 1
        pending = tuple(
            PendingPod(active + k, draw(st.integers(0, 2))) for k in range(draw(st.integers(0, 5)))
        )
        jobs.append(JobView(f"u{i}", f"j{i}", project, gpus, parallelism, seqs[i], active, pending))
    # Pods whose job is no longer in the snapshot, of a project that may be gone too.
    for k in range(draw(st.integers(0, 2))):
        project = draw(st.sampled_from([*names, "gone"]))
        hold(f"gone{k}-0-0", f"gone{k}", project, draw(st.integers(1, 2)), draw(st.booleans()))
    order = draw(st.permutations(range(len(pods))))
    pods = [replace(p, seq=order[n]) for n, p in enumerate(pods)]
    return Snapshot(tuple(ids), tuple(projects), tuple(jobs), tuple(pods))


def candidates(snapshot: Snapshot) -> dict[str, list[tuple[JobView, PendingPod]]]:
    """Per project, the pods that may start this cycle, in the order they should."""
    out: dict[str, list[tuple[JobView, PendingPod]]] = {}
    for j in sorted(snapshot.jobs, key=lambda j: j.seq):
        room = max(0, j.parallelism - j.active)
        out.setdefault(j.project, []).extend((j, p) for p in j.pending[:room])
    return out


def usage_of(snapshot: Snapshot) -> dict[str, int]:
    usage: dict[str, int] = {}
    for p in snapshot.pods:
        usage[p.project] = usage.get(p.project, 0) + len(p.gpus)
    return usage


def victims_available(
    requester: str, snapshot: Snapshot, usage: dict[str, int], shares: dict[str, float],
    quotas: dict[str, int], claim: bool,
) -> int:
    """GPUs that preempting every pod the rules allow would free for ``requester``: from
    projects over quota and share, kept at their quota and floor(share); for a quota
    ``claim``, from projects over quota, kept at their quota."""
    freed = 0
    for v in sorted({p.project for p in snapshot.pods} - {requester}):
        left = usage.get(v, 0)
        floor = max(quotas.get(v, 0), 0 if claim else math.floor(shares[v] + 1e-9))
        for p in sorted(snapshot.pods, key=lambda p: (-p.seq, p.name)):
            if p.project != v or p.terminating:
                continue
            over = (claim or left > shares[v] + 1e-9) and left > quotas.get(v, 0)
            if over and left - len(p.gpus) >= floor:
                left -= len(p.gpus)
                freed += len(p.gpus)
    return freed


def check_invariants(snapshot: Snapshot, decision: Decision) -> None:
    machine = set(snapshot.gpus)
    held = {g for p in snapshot.pods for g in p.gpus}
    jobs = {j.uid: j for j in snapshot.jobs}
    quotas = {p.name: p.quota for p in snapshot.projects}
    usage = usage_of(snapshot)
    shares = decision.shares

    # No GPU that is not there, held or given twice; the lowest free ids go first.
    given = [g for s in decision.starts for g in s.gpus]
    assert len(given) == len(set(given))
    assert set(given) <= machine - held
    assert sorted(given) == sorted(machine - held)[: len(given)]
    assert len(held) + len(given) <= len(machine)

    # Each start: a pending pod of its job, with the job's GPUs, within parallelism, in order.
    started: dict[str, list[tuple[int, int]]] = {}
    for s in decision.starts:
        assert len(s.gpus) == jobs[s.job_uid].gpus
        assert list(s.gpus) == sorted(s.gpus)
        started.setdefault(s.job_uid, []).append((s.index, s.attempt))
    for uid, pods in started.items():
        j = jobs[uid]
        assert j.active + len(pods) <= j.parallelism
        assert pods == [(p.index, p.attempt) for p in j.pending[: len(pods)]]

    # Shares as fair_shares computes them from the demands.
    demands: dict[str, int] = {}
    for j in snapshot.jobs:
        want = j.gpus * min(j.parallelism, j.active + len(j.pending))
        demands[j.project] = demands.get(j.project, 0) + want
    assert shares == fair_shares(len(machine), {**dict.fromkeys(usage, 0), **quotas}, demands)

    # Per project: the GPU pods that started are a prefix of its candidates (FIFO), and
    # every GPU-less candidate started.
    after = dict(usage)
    heads: dict[str, int] = {}
    keys = {(s.job_uid, s.index, s.attempt) for s in decision.starts}
    for project, cands in candidates(snapshot).items():
        gpu_cands = [(j, p) for j, p in cands if j.gpus]
        ran = [(j.uid, p.index, p.attempt) in keys for j, p in gpu_cands]
        assert ran == sorted(ran, reverse=True)
        assert all((j.uid, p.index, p.attempt) in keys for j, p in cands if not j.gpus)
        after[project] = after.get(project, 0) + sum(j.gpus for j, _ in gpu_cands[: sum(ran)])
        if sum(ran) < len(gpu_cands):
            heads[project] = gpu_cands[sum(ran)][0].gpus

    # Work-conserving: a pod that would fit waits only if it would take its project to or
    # over its share, while a project below its share waits for more GPUs than are free;
    # or over its quota, while a project within its quota (a claim) waits for more.
    free_left = len(machine - held) - len(given)
    for project, need in heads.items():
        if need <= free_left:
            claim_waits = after[project] + need > quotas.get(project, 0) and any(
                n > free_left and after[q] + n <= quotas.get(q, 0) and n <= len(machine)
                for q, n in heads.items())
            assert claim_waits or after[project] >= shares[project] - 1e-9
            assert claim_waits or any(
                n > free_left and after[q] < shares[q] - 1e-9 and n <= len(machine)
                for q, n in heads.items()
            )

    # Preemption: only running pods of projects over both quota and share, never taking
    # one below either; where a project's next pod is within its quota (a quota claim),
    # of projects over their quota, never taking one below it.
    by_name = {p.name: p for p in snapshot.pods}
    assert len(set(decision.preempt)) == len(decision.preempt)
    under_quota = {p: n for p, n in heads.items() if after[p] + n <= quotas.get(p, 0)}
    left = dict(after)
    for name in decision.preempt:
        victim = by_name[name]
        assert not victim.terminating
        assert after[victim.project] > quotas.get(victim.project, 0)
        assert under_quota or after[victim.project] > shares[victim.project] + 1e-9
        left[victim.project] -= len(victim.gpus)
    for project in {by_name[n].project for n in decision.preempt}:
        assert left[project] >= quotas.get(project, 0)
        assert under_quota or left[project] >= math.floor(shares[project] + 1e-9)

    # A project whose next pod fits in its share is not left waiting while pods the rules
    # let it preempt run: victims were chosen, or GPUs on their way back cover it, or no
    # victims can.
    coming = free_left + sum(len(p.gpus) for p in snapshot.pods if p.terminating)
    requesters = {p: n for p, n in heads.items() if after[p] + n <= shares[p] + 1e-9}
    if not decision.preempt:
        for project, need in {**requesters, **under_quota}.items():
            available = victims_available(project, snapshot, after, shares, quotas,
                                          project in under_quota)
            assert need <= coming or available < need
            if requesters == {project: need}:
                assert need <= coming or available < need - coming


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_invariants_hold_for_any_snapshot(snapshot: Snapshot) -> None:
    check_invariants(snapshot, decide(snapshot))


@settings(max_examples=200, deadline=None)
@given(snapshots(), st.randoms(use_true_random=False))
def test_decision_ignores_input_order(snapshot: Snapshot, rnd: random.Random) -> None:
    decision = decide(snapshot)
    assert decide(snapshot) == decision
    reordered = Snapshot(
        tuple(rnd.sample(snapshot.gpus, len(snapshot.gpus))),
        tuple(rnd.sample(snapshot.projects, len(snapshot.projects))),
        tuple(rnd.sample(snapshot.jobs, len(snapshot.jobs))),
        tuple(rnd.sample(snapshot.pods, len(snapshot.pods))),
    )
    assert decide(reordered) == decision


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 12),
    st.dictionaries(st.sampled_from("abcde"), st.integers(0, 4)),
    st.dictionaries(st.sampled_from("abcde"), st.integers(0, 8)),
)
def test_fair_shares_water_fill(
    total: int, quotas: dict[str, int], demands: dict[str, int]
) -> None:
    shares = fair_shares(total, quotas, demands)
    assert set(shares) == set(quotas) | set(demands)
    deserved = {p: min(demands.get(p, 0), quotas.get(p, 0)) for p in shares}
    for p, share in shares.items():
        assert deserved[p] - 1e-9 <= share <= demands.get(p, 0) + 1e-9
    # Every GPU goes to someone who wants it, and only quotas may promise more than exist.
    want = min(total, sum(demands.values()))
    assert sum(shares.values()) == pytest.approx(max(want, sum(deserved.values())))
