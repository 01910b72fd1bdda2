"""The local engine's pure parts, without a process or a store: how a pod's end is recorded,
a job's state rebuilt from its stored pods, what the policy is offered and what of its
decision is applied. The engine that runs them is tested in tests/control."""

from __future__ import annotations

import dataclasses
import random

import pytest

import podsweep.cluster.local as local
from podsweep.cluster import ENGINES
from podsweep.cluster.local import (
    DELETED,
    JOB_FAILED,
    PREEMPTED,
    JobState,
    PodEnd,
    job_views,
    launches,
    pod_end,
    rebuild_state,
)
from podsweep.model import JobSpec, JobStatus, PodStatus
from podsweep.scheduler import PendingPod, ProjectView, Start
from podsweep.store import Job, Pod

# ---------------------------------------------------------------------------------------
# Builders


def job(uid: str = "j1", *, completions: int = 4, parallelism: int = 2, gpus: int = 0,
        cpu: int = 1, project: str = "team-a",
        status: JobStatus = JobStatus.RUNNING) -> Job:
    spec = JobSpec(name=f"job-{uid}", project=project, command=["true"], gpus=gpus, cpu=cpu,
                   completions=completions, parallelism=parallelism)
    return Job(uid, 1, spec, "bob", status, 0.0, None, 0, 0, None)


def pod(index: int, attempt: int, status: PodStatus, reason: str | None = None) -> Pod:
    return Pod("j1", index, attempt, f"job-j1-{index}-{attempt}", status, (), 0, 0.0, None,
               None, reason, "/nonexistent")


# ---------------------------------------------------------------------------------------
# How a pod's end is recorded


@pytest.mark.parametrize(("reason", "code", "lost", "end"), [
    # stopped by a delete or by its job's failure: never a failure of its own
    (DELETED, 143, False, PodEnd(PodStatus.DELETED, DELETED, False)),
    (DELETED, 0, False, PodEnd(PodStatus.DELETED, DELETED, False)),
    (JOB_FAILED, 143, False, PodEnd(PodStatus.FAILED, "stopped: the job failed", False)),
    # preempted: runs again, not counted; but one that exits 0 in its grace period finished
    (PREEMPTED, 143, False, PodEnd(PodStatus.PREEMPTED, PREEMPTED, False)),
    (PREEMPTED, 0, False, PodEnd(PodStatus.SUCCEEDED, None, True)),
    # not stopped: its exit status says
    (None, 0, False, PodEnd(PodStatus.SUCCEEDED, None, True)),
    (None, 3, False, PodEnd(PodStatus.FAILED, "exit code 3", True)),
    (None, 137, True, PodEnd(PodStatus.FAILED, "supervisor lost", True)),
])
def test_a_pods_end_is_recorded_by_why_it_was_stopped_and_how_it_exited(
        reason: str | None, code: int, lost: bool, end: PodEnd) -> None:
    assert pod_end(reason, code, lost) == end


# ---------------------------------------------------------------------------------------
# A job's state rebuilt from its stored pods (recovery)


def test_a_jobs_state_is_rebuilt_from_every_attempt_of_its_pods() -> None:
    pods = [pod(0, 0, PodStatus.SUCCEEDED), pod(1, 0, PodStatus.FAILED),
            pod(1, 1, PodStatus.RUNNING), pod(2, 0, PodStatus.PREEMPTED),
            pod(4, 0, PodStatus.FAILED)]
    for order in range(3):       # the store's order does not matter
        random.Random(order).shuffle(pods)
        state = rebuild_state(job(completions=6), pods)
        assert state.succeeded == {0}
        assert state.active == {1: 1}
        assert state.attempts == {0: 0, 1: 1, 2: 0, 4: 0}
        assert state.next_fresh == 5
        # index 3 was skipped over: it waits with those that ended without succeeding
        assert state.queued == {2, 3, 4} and sorted(state.requeued) == [2, 3, 4]
        assert not state.deleting
        assert state.pending(10) == (PendingPod(2, 1), PendingPod(3, 0), PendingPod(4, 1),
                                     PendingPod(5, 0))


def test_a_job_with_no_pods_yet_starts_from_its_first_index() -> None:
    state = rebuild_state(job(), [])
    assert (state.next_fresh, state.requeued, state.active) == (0, [], {})
    assert state.pending(3) == (PendingPod(0, 0), PendingPod(1, 0), PendingPod(2, 0))


@pytest.mark.parametrize(("status", "pods", "deleting"), [
    # a delete under way: a pod still stopping for it
    (JobStatus.RUNNING, [pod(0, 0, PodStatus.TERMINATING, DELETED)], True),
    # a job already ended as deleted, its pods still stopping (or none left)
    (JobStatus.DELETED, [pod(0, 0, PodStatus.TERMINATING, DELETED)], True),
    (JobStatus.DELETED, [], True),
    # a pod that stopped for a delete and has ended holds nothing back
    (JobStatus.RUNNING, [pod(0, 0, PodStatus.DELETED, DELETED)], False),
    # a pod stopping for another reason
    (JobStatus.RUNNING, [pod(0, 0, PodStatus.TERMINATING, PREEMPTED)], False),
])
def test_a_delete_under_way_is_found_again(status: JobStatus, pods: list[Pod],
                                           deleting: bool) -> None:
    assert rebuild_state(job(status=status), pods).deleting is deleting


# ---------------------------------------------------------------------------------------
# What the policy is offered


def test_only_jobs_that_may_start_pods_are_offered() -> None:
    running, done = JobState(job("a")), JobState(job("b", status=JobStatus.SUCCEEDED))
    deleting = JobState(job("c"), deleting=True)
    views = job_views([running, done, deleting], [ProjectView("team-a", 1)], gpus=4, cpus=8)
    assert [v.uid for v in views] == ["a"]
    assert views[0].pending == (PendingPod(0, 0), PendingPod(1, 0))   # parallelism 2


def test_a_huge_job_is_offered_what_could_change_the_decision() -> None:
    # GPUs: (quota 2 + machine 4) / 1 + 1 = 7; CPUs: (quota 0 + machine 8) / 1 + 1 = 9
    huge = JobState(job(completions=100_000, parallelism=100_000, gpus=1))
    [view] = job_views([huge], [ProjectView("team-a", 2)], gpus=4, cpus=8)
    assert [p.index for p in view.pending] == list(range(9))
    assert (view.parallelism, view.active, view.gpus, view.cpu) == (100_000, 0, 1, 1)


def test_a_job_offers_no_more_than_its_parallelism_leaves_room_for() -> None:
    state = JobState(job(completions=10, parallelism=3))
    state.take(0, 0)
    state.take(1, 0)
    [view] = job_views([state], [], gpus=0, cpus=64)    # a project with no quota: 0
    assert view.active == 2
    assert view.pending == (PendingPod(2, 0),)


# ---------------------------------------------------------------------------------------
# What of the decision is applied


def test_starts_of_jobs_gone_ended_or_being_deleted_are_dropped() -> None:
    states = {"a": JobState(job("a")), "b": JobState(job("b", status=JobStatus.FAILED)),
              "c": JobState(job("c"), deleting=True)}
    starts = [Start("a", 0, 0, ()), Start("b", 0, 0, ()), Start("c", 0, 0, ()),
              Start("gone", 0, 0, ()), Start("a", 1, 0, ())]
    assert [(s is states["a"], start.index) for s, start in launches(starts, states)] == [
        (True, 0), (True, 1)]


def test_each_start_is_checked_once_those_before_it_are_made() -> None:
    state = JobState(job("a"))
    made = []
    for s, start in launches([Start("a", 0, 0, ()), Start("a", 1, 0, ())], {"a": state}):
        made.append(start.index)
        s.job = dataclasses.replace(s.job, status=JobStatus.FAILED)   # the first ended it
    assert made == [0]


# ---------------------------------------------------------------------------------------
# The package's face


def test_the_engine_registry_names_the_local_cluster() -> None:
    assert ENGINES["local"]() is local.LocalCluster


def test_the_package_exports_what_it_names() -> None:
    assert sorted(local.__all__) == sorted(
        ["DELETED", "DISK_FULL_RETRY", "JOB_FAILED", "LOST", "MAX_OFFERED_QUOTA", "PREEMPTED",
         "RECONCILE_FAILED", "JobState", "LocalCluster", "PodEnd", "job_views", "launches",
         "offer_limit", "pod_end", "rebuild_state"])
    assert all(hasattr(local, name) for name in local.__all__)
