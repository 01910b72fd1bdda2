"""Recovery after a crash at the worst moments, on an in-process local cluster.

Each test writes the state a control plane killed at that moment leaves behind (the store
and real pod processes), then starts a fresh LocalCluster on it, as the next `podsweep up`
does, and checks that it finishes what was under way.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from podsweep.cluster.local import DELETED, JOB_FAILED, RECONCILE_FAILED, LocalCluster
from podsweep.model import JobSpec, JobStatus, PodStatus
from podsweep.runtime import PodLaunch, PodProcess, virtual_gpus
from podsweep.store import Store


def launch(home: Path, store: Store, uid: str, name: str, gpus: tuple[int, ...],
           argv: list[str], grace: float = 0.5) -> tuple[PodProcess, object]:
    pod_dir = home / "pods" / uid / name
    pod = store.insert_pod(uid, int(name.split("-")[-2]), int(name.split("-")[-1]), name, gpus,
                           str(pod_dir))
    proc = PodProcess.launch(PodLaunch(pod_dir, argv, dict(os.environ), None,
                                       pod_dir / "pod.log", grace))
    return proc, pod


async def until(what: str, test: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def new_store(tmp_path: Path) -> tuple[Path, Store]:
    home = tmp_path / "home"
    home.mkdir()
    store = Store(home / "podsweep.db")
    store.create_project("team-a", 4)
    return home, store


def test_a_job_whose_last_pod_succeeded_just_before_the_crash_ends(tmp_path: Path):
    home, store = new_store(tmp_path)
    job = store.insert_job("j1", JobSpec(name="j", project="team-a", command=["true"]), "me")
    store.update_job(job.uid, status=JobStatus.RUNNING)
    pod = store.insert_pod(job.uid, 0, 0, "j-0-0", (), str(home / "pods" / "j1" / "j-0-0"))
    store.update_pod(pod, status=PodStatus.SUCCEEDED, exit_code=0)   # ... then the crash

    async def run() -> None:
        cluster = LocalCluster(home, store, virtual_gpus(4), asyncio.get_running_loop())
        cluster.recover()
        await asyncio.sleep(0.2)

    asyncio.run(run())
    ended = store.job("j1")
    assert ended is not None and ended.status is JobStatus.SUCCEEDED and ended.succeeded == 1
    assert len(store.pods("j1")) == 1          # nothing ran again


# Deleted: as delete() leaves it now (the job's end committed with its pods' stops);
# Running: as an earlier version did, which committed the job's end last.
@pytest.mark.parametrize("status", [JobStatus.DELETED, JobStatus.RUNNING])
def test_a_delete_cut_short_by_the_crash_is_finished_not_undone(tmp_path: Path,
                                                                 status: JobStatus):
    home, store = new_store(tmp_path)
    spec = JobSpec(name="j", project="team-a", command=["sleep", "30"], completions=3)
    job = store.insert_job("j1", spec, "me")
    store.update_job(job.uid, status=status)
    proc, pod = launch(home, store, job.uid, "j-0-0", (), ["sleep", "30"])
    store.update_pod(pod, status=PodStatus.TERMINATING, reason=DELETED)
    proc.terminate()                                                  # ... then the crash

    async def run() -> None:
        cluster = LocalCluster(home, store, virtual_gpus(4), asyncio.get_running_loop())
        cluster.recover()
        await until("the pod deleted", lambda: not store.active_pods())
        await asyncio.sleep(0.3)                                      # and nothing restarts

    asyncio.run(run())
    assert store.job("j1").status is JobStatus.DELETED
    assert [p.name for p in store.pods("j1")] == ["j-0-0"]
    assert store.pods("j1")[0].status is PodStatus.DELETED


def test_gpus_of_a_failed_jobs_stopping_pods_are_not_handed_out_twice(tmp_path: Path):
    home, store = new_store(tmp_path)
    failed = store.insert_job("f1", JobSpec(name="f", project="team-a",
                                            command=["sleep", "30"], gpus=1), "me")
    store.update_job(failed.uid, status=JobStatus.FAILED)
    ready = tmp_path / "trapped"           # SIGTERM is ignored from here on: slow to stop
    proc, pod = launch(home, store, failed.uid, "f-0-0", (0,),
                       ["sh", "-c", f"trap '' TERM; touch {ready}; sleep 30"], grace=3)
    deadline = time.monotonic() + 20
    while not ready.exists():              # a SIGTERM before the trap would end it at once
        assert time.monotonic() < deadline, "the pod never set its trap"
        time.sleep(0.02)
    store.update_pod(pod, status=PodStatus.TERMINATING, reason=JOB_FAILED)
    big = store.insert_job("b1", JobSpec(name="b", project="team-a", command=["true"],
                                         gpus=4), "me")

    async def run() -> None:
        cluster = LocalCluster(home, store, virtual_gpus(4), asyncio.get_running_loop())
        cluster.recover()
        await asyncio.sleep(0.5)
        assert store.pods(big.uid) == [], "GPU 0 is still held by f-0-0"
        await cluster.delete("team-a", "f")       # returns once f-0-0 is gone
        await until("b started", lambda: bool(store.pods(big.uid)))

    try:
        asyncio.run(run())
    finally:
        proc.kill()
    assert store.job("f1").status is JobStatus.DELETED


def test_a_crash_after_the_deleted_jobs_last_pod_ended_does_not_run_it_again(tmp_path: Path):
    # The crash comes after the reconcile that accounts for the job's last pod has committed
    # and before delete() runs again: nothing of the delete may be left to that second step.
    home, store = new_store(tmp_path)
    spec = JobSpec(name="j", project="team-a", command=["sleep", "30"], completions=2,
                   parallelism=2)

    async def first() -> str:
        cluster = LocalCluster(home, store, virtual_gpus(4), asyncio.get_running_loop())
        cluster.recover()
        uid = cluster.submit(spec, "me").uid
        await until("both pods running", lambda: len(cluster._procs) == 2)
        task = asyncio.create_task(cluster.delete("team-a", "j"))
        await asyncio.sleep(0)                       # delete() now waits for its pods
        cluster._idle[uid] = asyncio.Event()         # ... and is never woken: the "crash"
        await until("the pods ended", lambda: not store.active_pods())
        cluster.shutdown()
        task.cancel()
        return uid

    async def second(uid: str) -> None:
        cluster = LocalCluster(home, store, virtual_gpus(4), asyncio.get_running_loop())
        cluster.recover()
        await asyncio.sleep(0.5)                     # time enough to start pods, were any due
        cluster.shutdown()

    uid = asyncio.run(first())
    asyncio.run(second(uid))
    job = store.job(uid)
    assert job is not None and job.status is JobStatus.DELETED
    assert [p.status for p in store.pods(uid)] == [PodStatus.DELETED] * 2   # none ran again


def test_a_reconcile_that_raises_stops_the_control_plane_and_the_next_one_recovers(
        tmp_path: Path):
    # Its transaction rolls back but memory does not: going on would schedule from a state
    # the store does not hold. Here the policy raises once a pod has ended (a hook standing
    # for any failure inside the transaction).
    home, store = new_store(tmp_path)
    script = f"""
import asyncio, logging, sys
from pathlib import Path
import podsweep.cluster.local as local
import podsweep.cluster.local.loop as loop   # the reconcile calls the policy from there
from podsweep.model import JobSpec
from podsweep.runtime import virtual_gpus
from podsweep.store import Store

logging.basicConfig(stream=sys.stderr)
decide = loop.decide

def failing(snapshot):
    if any(s.succeeded for s in cluster._states.values()):    # pod 0's end accounted
        raise RuntimeError("injected")
    return decide(snapshot)

async def main():
    global cluster
    cluster = local.LocalCluster(Path({str(home)!r}), Store(Path({str(home)!r}) / "podsweep.db"),
                                 virtual_gpus(4), asyncio.get_running_loop())
    cluster.recover()
    loop.decide = failing
    cluster.submit(JobSpec(name="j", project="team-a", command=["true"], completions=2),
                   "me")
    await asyncio.sleep(5)
    print("still running")

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == RECONCILE_FAILED, result.stdout + result.stderr
    assert "a reconcile failed" in result.stderr and "injected" in result.stderr
    [job] = store.jobs()
    assert job.succeeded == 0          # the pod's end was rolled back with the rest

    async def run() -> None:
        cluster = LocalCluster(home, store, virtual_gpus(4), asyncio.get_running_loop())
        cluster.recover()
        await until("the job succeeded", lambda: store.job(job.uid).status is
                    JobStatus.SUCCEEDED)
        cluster.shutdown()

    asyncio.run(run())
    # index 0 ran once (its end, rolled back, was recovered from its exit file), then 1
    assert [(p.index, p.status) for p in store.pods(job.uid)] == \
        [(0, PodStatus.SUCCEEDED), (1, PodStatus.SUCCEEDED)]
