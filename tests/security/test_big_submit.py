"""One huge submit must not hang the control plane for everyone (issue 10, item 1).

A non-admin's job of 100,000 completions, 100,000 at a time, one GPU each, on a real control
plane: everyone else's calls keep being answered, a SIGKILLed control plane comes back up and
answers, and the job can be deleted. Counts past the sane bounds are refused at submit in
one line. Below that, on the cluster's own objects: what one reconcile offers the policy, and
the work :meth:`JobState.pending` does, stay bounded whatever the job's size, and bounding
the offer leaves the policy's decision as it would be with every pod offered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podsweep.cluster.local import JobState, LocalCluster, offer_limit
from podsweep.model import JobSpec, JobStatus, PodStatus
from podsweep.runtime import virtual_gpus
from podsweep.scheduler import JobView, PendingPod, ProjectView, RunningPod, Snapshot, decide
from podsweep.store import Job, Store
from tests.control.conftest import PODSWEEP, ControlPlane

BIG = ["--parallelism", "100000", "--completions", "100000"]
ANSWER_WITHIN = 30.0     # "answers at all": a hung control plane never does


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A real control plane with 4 virtual GPUs (tests/control's fixture, here too)."""
    cp = ControlPlane(tmp_path / "home")
    cp.run("up", "--gpus", "4")
    yield cp
    cp.stop()


def answers(plane: ControlPlane, *args: str, token: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``podsweep ARGS``, which must exit 0 within ANSWER_WITHIN seconds."""
    env = dict(plane.env)
    if token is not None:
        env["PODSWEEP_TOKEN"] = token
    try:
        proc = subprocess.run([PODSWEEP, *args], capture_output=True, text=True, env=env,
                              timeout=ANSWER_WITHIN)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"podsweep {' '.join(args)}: no answer within "
                             f"{ANSWER_WITHIN:.0f} s") from None
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def new_user(plane: ControlPlane, name: str, project: str) -> str:
    """A member of PROJECT; their token."""
    out = plane.run("user", "create", name, "-p", project).stdout
    return out.split("CLI token: ")[1].split()[0]


def succeeded(plane: ControlPlane, name: str, project: str) -> int:
    jobs = json.loads(answers(plane, "list", "-A", "-o", "json").stdout)
    return int(next(j["succeeded"] for j in jobs if j["name"] == name
                    and j["project"] == project))


def test_a_huge_submit_leaves_the_control_plane_answering_across_a_restart(
        plane: ControlPlane) -> None:
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "2")
    token = new_user(plane, "bob", "team-b")
    answers(plane, "submit", "small", "-p", "team-a", "--", "true")
    answers(plane, "submit", "big", "-p", "team-b", "-g", "1", *BIG, "--", "true", token=token)
    plane.until("the big job to run pods", lambda: succeeded(plane, "big", "team-b") >= 20)

    # everyone else is answered while it runs
    rows = json.loads(answers(plane, "list", "-A", "-o", "json").stdout)
    assert {r["name"] for r in rows} == {"small", "big"}
    assert answers(plane, "get", "small", "-p", "team-a", "-o", "json").stdout
    answers(plane, "submit", "small2", "-p", "team-a", "--", "true")
    plane.until("small2 to succeed",
                lambda: plane.job("small2", "team-a")["job"]["status"] == "Succeeded")

    # a SIGKILLed control plane comes back, answers, and goes on with the job
    os.kill(plane.server_pid(), signal.SIGKILL)
    plane.until("the server to die", lambda: subprocess.run(
        [PODSWEEP, "list", "-A"], env=plane.env, capture_output=True, timeout=ANSWER_WITHIN
    ).returncode != 0)
    answers(plane, "up", "--gpus", "4")
    before = succeeded(plane, "big", "team-b")
    answers(plane, "list", "-A")
    answers(plane, "get", "small", "-p", "team-a")
    plane.until("the big job to go on", lambda: succeeded(plane, "big", "team-b") > before)

    # and its owner can delete it
    answers(plane, "delete", "big", "-p", "team-b", token=token)
    gone = plane.run("get", "big", "-p", "team-b", token=token, check=False)
    assert gone.returncode == 3, gone.stderr
    assert {r["name"] for r in json.loads(answers(plane, "list", "-A", "-o", "json").stdout)} \
        == {"small", "small2"}
    projects = json.loads(answers(plane, "project", "list", "-o", "json").stdout)
    assert {p["name"]: p["allocated"] for p in projects} == {"team-a": 0, "team-b": 0}
    # nothing of it runs on: the only process left that names the home is the server
    plane.until("its pods to be gone", lambda: set(plane.pod_pids()) <= {plane.server_pid()})


def test_counts_past_the_bounds_are_refused_in_one_line(plane: ControlPlane) -> None:
    plane.run("project", "create", "team-b", "--gpus", "2")
    token = new_user(plane, "bob", "team-b")
    for flags, says in ((["--completions", "100001"], "--completions must be at most 100,000"),
                        (["--parallelism", str(10**30)], "--parallelism must be at most"),
                        (["-g", "1025"], "--gpu must be at most 1,024"),
                        (["--cpu", "4097"], "--cpu must be at most 4,096"),
                        (["--backoff-limit", "1000001"], "--backoff-limit must be at most")):
        refused = plane.run("submit", "x", "-p", "team-b", *flags, "--", "true", token=token,
                            check=False)
        assert refused.returncode == 2, (flags, refused.stdout, refused.stderr)
        assert len(refused.stderr.splitlines()) == 1 and says in refused.stderr, refused.stderr
    # the API says the same, in one line
    server = json.loads((plane.home / "server.json").read_text())
    for field, value in (("completions", 100_001), ("completions", 10**30),
                         ("parallelism", 100_001), ("gpus", 1025)):
        body = {"name": "x", "project": "team-b", "command": ["true"], field: value}
        request = urllib.request.Request(
            f"{server['url']}/api/v1/jobs", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=ANSWER_WITHIN)
            raise AssertionError(f"{field}={value} was accepted")
        except urllib.error.HTTPError as error:
            detail = json.loads(error.read())["detail"]
            assert error.code in (400, 422), (field, error.code, detail)
            assert isinstance(detail, str) and "\n" not in detail and "at most" in detail, detail
    assert plane.json("list", "-A") == []       # nothing was stored


# ------------------------------------------------------------ bounded work per reconcile

def job(completions: int, parallelism: int, gpus: int = 0, project: str = "team-a") -> Job:
    spec = JobSpec(name="big", project=project, command=["true"], gpus=gpus,
                   parallelism=parallelism, completions=completions)
    return Job("j1", 1, spec, "bob", JobStatus.RUNNING, 0.0, None, 0, 0, None)


class CountingSet(set[int]):
    """A set that counts the membership tests made on it: the work done per index seen."""

    tests = 0

    def __contains__(self, item: object) -> bool:
        CountingSet.tests += 1
        return super().__contains__(item)


def test_pending_touches_only_the_pods_it_returns() -> None:
    state = JobState(job(100_000, 100_000), queued=CountingSet(), succeeded=CountingSet())
    for index in range(60_000):                 # 60,000 pods ran ...
        state.take(index, 0)
    for index in range(0, 60_000, 2):           # ... half of them failed, half succeeded
        state.requeue(index)
    for index in range(1, 60_000, 2):
        state.active.pop(index)
        state.succeeded.add(index)
    CountingSet.tests = 0
    pods = state.pending(32)
    assert [p.index for p in pods] == list(range(0, 64, 2))
    assert all(p.attempt == 1 for p in pods)
    assert CountingSet.tests <= 4 * 32, CountingSet.tests
    # taking what was offered leaves no trail of stale heap entries behind
    for _ in range(900):
        for pod in state.pending(32):
            state.take(pod.index, pod.attempt)
    assert len(state.requeued) <= 2 * len(state.queued) + 16
    assert state.pending(3) == (PendingPod(57_600, 1), PendingPod(57_602, 1),
                                PendingPod(57_604, 1))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.lists(st.tuples(st.sampled_from("tsf"), st.integers(0, 39)),
                                    max_size=120), st.integers(0, 12))
def test_pending_is_the_lowest_indexes_not_done_nor_running(
        completions: int, ops: list[tuple[str, int]], limit: int) -> None:
    """Against the plain definition, after any sequence of starts, successes and failures."""
    state = JobState(job(completions, completions))
    for op, pick in ops:
        if op == "t":
            waiting = state.pending(completions)
            if waiting:
                pod = waiting[pick % len(waiting)]
                state.take(pod.index, pod.attempt)
        elif state.active:
            index = sorted(state.active)[pick % len(state.active)]
            if op == "s":
                state.active.pop(index)
                state.succeeded.add(index)
            else:
                state.requeue(index)
    want = [i for i in range(completions) if i not in state.succeeded and i not in state.active]
    assert [p.index for p in state.pending(limit)] == want[:limit]
    assert all(p.attempt == state.attempts.get(p.index, -1) + 1 for p in state.pending(limit))


@st.composite
def crowded_snapshots(draw: st.DrawFn) -> Snapshot:
    """Small machines, long queues: jobs of GPU pods with far more pending than can run."""
    machine = draw(st.integers(0, 8))
    free = list(range(machine))
    names = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    projects = tuple(ProjectView(n, draw(st.integers(0, 12))) for n in names)
    jobs, pods = [], []
    for seq in range(draw(st.integers(0, 4))):
        project, gpus = draw(st.sampled_from(names)), draw(st.integers(1, 3))
        active = 0
        for n in range(draw(st.integers(0, 2))):
            if len(free) >= gpus:
                held, free = tuple(free[:gpus]), free[gpus:]
                pods.append(RunningPod(f"j{seq}-{n}", f"j{seq}", project, held,
                                       draw(st.integers(0, 99)), draw(st.booleans())))
                active += 1
        parallelism = active + draw(st.integers(0, 40))
        pending = tuple(PendingPod(i, 0) for i in range(draw(st.integers(0, 40))))
        jobs.append(JobView(f"j{seq}", f"j{seq}", project, gpus, parallelism, seq, active,
                            pending[:parallelism - active]))
    return Snapshot(tuple(range(machine)), projects, tuple(jobs), tuple(pods))


@settings(max_examples=500, deadline=None)
@given(crowded_snapshots())
def test_the_bounded_offer_decides_as_offering_everything(snapshot: Snapshot) -> None:
    quotas = {p.name: p.quota for p in snapshot.projects}
    bounded = Snapshot(snapshot.gpus, snapshot.projects, tuple(
        JobView(j.uid, j.name, j.project, j.gpus, j.parallelism, j.seq, j.active,
                j.pending[:offer_limit(j.parallelism - j.active,
                                       ((j.gpus, quotas[j.project], len(snapshot.gpus)),))])
        for j in snapshot.jobs), snapshot.pods)
    assert decide(bounded) == decide(snapshot)


def test_a_reconcile_offers_a_bounded_number_of_pods(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = Store(home / "podsweep.db")
    store.create_project("team-a", 2)
    gpu_job = store.insert_job("g1", JobSpec(name="g", project="team-a", command=["true"],
                                             gpus=1, parallelism=100_000,
                                             completions=100_000), "bob")
    cpu_job = store.insert_job("c1", JobSpec(name="c", project="team-a", command=["true"],
                                             parallelism=100_000, completions=100_000), "bob")

    # a loop that never runs: the snapshot is taken, no reconcile starts a pod
    loop = asyncio.new_event_loop()
    try:
        cluster = LocalCluster(home, store, virtual_gpus(4), loop)
        cluster.recover()
        offered = {j.uid: len(j.pending) for j in cluster.snapshot().jobs}
        # enough to fill the machine and to show a demand past quota + machine, no more
        # (the project's CPU quota is 0: it may borrow the machine's CPUs)
        cpus = cluster.cpus
        assert offered == {gpu_job.uid: max((2 + 4) // 1 + 1, (0 + cpus) // 1 + 1),
                           cpu_job.uid: (0 + cpus) // 1 + 1}
    finally:
        loop.close()


def test_recovery_of_a_big_job_reads_the_store_once(tmp_path: Path) -> None:
    """A job half done at the crash: its state comes back whole, from one read of its pods."""
    home = tmp_path / "home"
    home.mkdir()
    store = Store(home / "podsweep.db")
    store.create_project("team-a", 4)
    spec = JobSpec(name="big", project="team-a", command=["true"], gpus=1,
                   parallelism=100_000, completions=100_000, backoff_limit=100_000)
    uid = store.insert_job("b1", spec, "bob").uid
    with store.transaction():
        for index in range(20_000):
            pod = store.insert_pod(uid, index, 0, f"big-{index}-0", (0,), str(home / "x"))
            status = PodStatus.SUCCEEDED if index % 4 else PodStatus.FAILED
            store.update_pod(pod, status=status, exit_code=0 if index % 4 else 1)
        store.update_job(uid, status=JobStatus.RUNNING, succeeded=15_000, failed=5_000)

    loop = asyncio.new_event_loop()
    try:
        cluster = LocalCluster(home, store, virtual_gpus(4), loop)
        traced: list[str] = []
        store.db.set_trace_callback(traced.append)
        cluster.recover()
        store.db.set_trace_callback(None)
        assert len(traced) < 20, traced         # a few queries, not one per pod
        state = cluster._states[uid]
        assert len(state.succeeded) == 15_000 and len(state.queued) == 5_000
        assert [p.index for p in state.pending(3)] == [0, 4, 8]
        assert cluster.store.job(uid).status is JobStatus.RUNNING   # type: ignore[union-attr]
    finally:
        loop.close()


@st.composite
def crowded_cpu_snapshots(draw: st.DrawFn) -> Snapshot:
    """The same with CPUs scheduled, as on the local cluster: every pod takes CPUs, some GPUs."""
    machine, cpus = draw(st.integers(0, 4)), draw(st.integers(1, 8))
    free, free_cpus = list(range(machine)), cpus
    names = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    projects = tuple(ProjectView(n, draw(st.integers(0, 6)), draw(st.integers(0, 12)))
                     for n in names)
    jobs, pods = [], []
    for seq in range(draw(st.integers(0, 4))):
        project = draw(st.sampled_from(names))
        gpus, cpu = draw(st.integers(0, 2)), draw(st.integers(1, 3))
        active = 0
        for n in range(draw(st.integers(0, 2))):
            if len(free) >= gpus and free_cpus >= cpu:
                held, free = tuple(free[:gpus]), free[gpus:]
                free_cpus -= cpu
                pods.append(RunningPod(f"j{seq}-{n}", f"j{seq}", project, held,
                                       draw(st.integers(0, 99)), draw(st.booleans()), cpu))
                active += 1
        parallelism = active + draw(st.integers(0, 40))
        pending = tuple(PendingPod(i, 0) for i in range(draw(st.integers(0, 40))))
        jobs.append(JobView(f"j{seq}", f"j{seq}", project, gpus, parallelism, seq, active,
                            pending[:parallelism - active], cpu))
    return Snapshot(tuple(range(machine)), projects, tuple(jobs), tuple(pods), cpus)


@settings(max_examples=500, deadline=None)
@given(crowded_cpu_snapshots())
def test_the_bounded_offer_decides_as_offering_everything_with_cpus(snapshot: Snapshot) -> None:
    assert snapshot.cpus is not None
    quotas = {p.name: p for p in snapshot.projects}
    bounded = dataclasses.replace(snapshot, jobs=tuple(
        dataclasses.replace(j, pending=j.pending[:offer_limit(j.parallelism - j.active, (
            (j.gpus, quotas[j.project].quota, len(snapshot.gpus)),
            (j.cpu, quotas[j.project].cpu_quota, snapshot.cpus)))])
        for j in snapshot.jobs))
    assert decide(bounded) == decide(snapshot)
