"""The Slurm engine in-process on the real Slurm, with a crash forced between two of its
steps (an exception there leaves the store as a SIGKILL would: what was committed stays,
nothing else): after it, the next poll must still reach the right end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podsweep.cluster.slurm import SlurmCluster, SlurmError
from podsweep.cluster.slurm import cluster as slurm_engine
from podsweep.errors import Conflict
from podsweep.model import JobSpec, JobStatus
from podsweep.store import Store

from .conftest import clean_slurm, run


class Crash(Exception):
    """Stands for the control plane dying at this point."""


class Engine:
    def __init__(self, home: Path, prefix: str) -> None:
        self.home = home
        self.prefix = prefix
        self.loop = asyncio.new_event_loop()
        self.store = Store(home / "state.db")
        self.cluster = self.open()

    def open(self) -> SlurmCluster:
        """A control plane (again) on the same home and store."""
        return SlurmCluster(self.home, self.store, self.loop, self.prefix)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def project(self, name: str, gpus: int) -> None:
        self.run(self.cluster._ensure_borrow_qos())     # recover() does it in the server
        self.cluster.create_project(name, gpus)
        self.run(self.cluster._ready[name])

    def submit(self, spec: JobSpec) -> str:
        uid = self.cluster.submit(spec, "admin").uid
        self.run(self.cluster._launches[uid])
        return uid

    def poll_until(self, what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
        """Poll until probe() is true; a Crash inside the poll ends the wait too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.run(self.cluster.poll())
            except Crash:
                return "crash"
            found = probe()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def done(self, uid: str) -> bool:
        job = self.store.job(uid)
        return job is not None and job.status.done


@pytest.fixture
def engine(slurm: None, tmp_path: Path) -> Iterator[Engine]:
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    home = tmp_path / "home"
    home.mkdir()
    eng = Engine(home, prefix)
    try:
        yield eng
    finally:
        eng.cluster.shutdown()
        pending = asyncio.all_tasks(eng.loop)
        for task in pending:
            task.cancel()

        async def drain() -> None:
            await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.sleep(0.2)     # subprocess transports finish closing
        eng.loop.run_until_complete(drain())
        eng.loop.close()
        clean_slurm(prefix)


def test_a_crash_inside_a_pods_end_loses_neither_a_success_nor_a_retry(engine: Engine):
    engine.project("team-a", 2)
    ok = engine.submit(JobSpec("ok", "team-a", ["true"]))
    store, cluster = engine.store, engine.cluster

    # the control plane dies as the success is counted
    real_update = store.update_job

    def crash_on_count(uid: str, **fields: Any) -> None:
        if "succeeded" in fields:
            raise Crash()
        real_update(uid, **fields)
    store.update_job = crash_on_count          # type: ignore[method-assign]
    assert engine.poll_until("ok's end", lambda: engine.done(ok)) == "crash"
    del store.update_job
    assert [p.status.value for p in store.pods(ok)] == ["Running"]   # nothing half-stored

    # the control plane dies as it retries the failed task (submitted only now: had it
    # failed before ok's end, the poll above would have retried it before its crash)
    retry = engine.submit(JobSpec("retry", "team-a", ["sh", "-c",
                                                      'test "$PODSWEEP_POD_ATTEMPT" = 1'],
                                  backoff_limit=2))
    real_arun = cluster._arun

    async def crash_on_requeue(*argv: str, **kw: Any) -> str:
        if argv[:2] == ("scontrol", "requeue"):
            raise Crash()
        return await real_arun(*argv, **kw)
    cluster._arun = crash_on_requeue           # type: ignore[method-assign]
    assert engine.poll_until("retry's failure", lambda: False) == "crash"
    job = store.job(retry)
    assert job is not None and job.failed == 0
    assert [p.status.value for p in store.pods(retry)] == ["Running"]

    # a new control plane on the same store catches up
    engine.cluster = engine.open()
    engine.poll_until("both jobs' ends", lambda: engine.done(ok) and engine.done(retry))
    ok_job, retry_job = store.job(ok), store.job(retry)
    assert ok_job is not None and retry_job is not None
    assert (ok_job.status, ok_job.succeeded) == (JobStatus.SUCCEEDED, 1), ok_job
    assert (retry_job.status, retry_job.succeeded, retry_job.failed) == \
        (JobStatus.SUCCEEDED, 1, 1), retry_job
    assert [(p.name, p.status.value) for p in store.pods(retry)] == \
        [("retry-0-0", "Failed"), ("retry-0-1", "Succeeded")]


def test_an_array_sbatch_made_before_a_crash_or_a_timeout_is_adopted(engine: Engine):
    engine.project("team-a", 2)
    cluster = engine.cluster
    real_arun = cluster._arun
    how: dict[str, Exception] = {}

    async def sbatch_then(*argv: str, **kw: Any) -> str:
        out = await real_arun(*argv, **kw)
        if argv[0] == "sbatch" and how:
            raise how.pop("next")     # Slurm took it; its answer is lost
        return out
    cluster._arun = sbatch_then                # type: ignore[method-assign]

    # sbatch's answer never comes (it timed out after slurmctld took the job)
    how["next"] = SlurmError("sbatch: no answer in 30 s")
    timed_out = engine.submit(JobSpec("slow", "team-a", ["true"]))
    # the control plane dies right after sbatch, before it stored the array's id
    how["next"] = Crash()
    with pytest.raises(Crash):
        engine.submit(JobSpec("crashed", "team-a", ["true"]))
    crashed = next(j.uid for j in engine.store.jobs() if j.name == "crashed")
    assert engine.store.job(crashed).engine_ref is None       # type: ignore[union-attr]

    engine.cluster = cluster = engine.open()
    cluster.recover()
    cluster.shutdown()      # this test polls by itself
    for launch in list(cluster._launches.values()):     # the look-ups recover() began
        engine.run(launch)
    engine.poll_until("both jobs' ends", lambda: engine.done(timed_out) and
                      engine.done(crashed))
    for uid in (timed_out, crashed):
        job = engine.store.job(uid)
        assert job is not None and job.engine_ref is not None
        assert (job.status, job.succeeded) == (JobStatus.SUCCEEDED, 1), job
    # one array each in Slurm, found by the name that carries the job's uid
    names = set(run("squeue", "-h", "-t", "all", "-A", f"{engine.prefix}team-a",
                    "-o", "%j").split())
    assert names == {f"slow.{timed_out}", f"crashed.{crashed}"}


def test_a_delete_while_the_poller_retries_leaves_nothing_running(
        engine: Engine, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(slurm_engine, "DELETE_TIMEOUT", 20.0)   # Slurm's KillWait is 2 s here
    engine.project("team-a", 2)
    # fails at first; a retry would sleep on and on
    uid = engine.submit(JobSpec("flaky", "team-a", ["sh", "-c", 'test "$PODSWEEP_POD_ATTEMPT"'
                                                    ' = 0 && exit 3; exec sleep 300'],
                                backoff_limit=3))
    cluster = engine.cluster
    real_arun = cluster._arun
    deletes: list[asyncio.Task[None]] = []

    async def delete_during_requeue(*argv: str, **kw: Any) -> str:
        if argv[:2] == ("scontrol", "requeue") and not deletes:
            # the user deletes the job just as the poller retries its failed task
            deletes.append(asyncio.ensure_future(cluster.delete("team-a", "flaky")))
            await asyncio.sleep(1.0)
        return await real_arun(*argv, **kw)
    cluster._arun = delete_during_requeue      # type: ignore[method-assign]
    engine.poll_until("the retry", lambda: deletes)
    engine.run(deletes[0])          # without the fix: Slurm still runs the retried task
    job = engine.store.job(uid)
    assert job is not None and job.status is JobStatus.DELETED
    array = str(job.engine_ref)
    live = [r for r in json.loads(run("squeue", "--json"))["jobs"]
            if str(r["array_job_id"]) == array and r["job_state"] in ("PENDING", "RUNNING")]
    assert live == []


def test_a_delete_returns_once_nothing_runs_though_slurm_fails_it_at_first(
        engine: Engine, monkeypatch: pytest.MonkeyPatch):
    """delete's contract on every engine: it returns once no pod of the job runs, the job
    Deleted. A lost scancel and a squeue that fails once on the way used to make it raise
    and leave the job running."""
    monkeypatch.setattr(slurm_engine, "DELETE_TIMEOUT", 3.0)    # cancel again after 3 s
    engine.project("team-a", 2)
    uid = engine.submit(JobSpec("long", "team-a", ["sleep", "300"], parallelism=2,
                                completions=4))
    store, cluster = engine.store, engine.cluster
    engine.poll_until("2 pods running", lambda: len(
        [p for p in store.pods(uid) if p.status.active]) == 2)
    real_arun = cluster._arun
    failures = ["scancel", "squeue"]

    async def flaky(*argv: str, **kw: Any) -> str:
        if failures and argv[0] == failures[0]:
            failures.pop(0)
            if argv[0] == "scancel":
                return ""       # lost on its way: slurmctld never saw it
            raise SlurmError("squeue: Socket timed out on send/recv operation")
        return await real_arun(*argv, **kw)
    cluster._arun = flaky                      # type: ignore[method-assign]
    engine.run(cluster.delete("team-a", "long"))
    assert failures == []
    job = store.job(uid)
    assert job is not None and job.status is JobStatus.DELETED
    assert {p.status.value for p in store.pods(uid)} == {"Deleted"}
    array = str(job.engine_ref)
    live = [r for r in json.loads(run("squeue", "--json"))["jobs"]
            if str(r["array_job_id"]) == array and r["job_state"] in ("PENDING", "RUNNING")]
    assert live == []


def test_a_delete_slurm_never_carries_out_gives_up_in_one_line_and_keeps_the_job(
        engine: Engine, monkeypatch: pytest.MonkeyPatch):
    """Every scancel lost (slurmctld unreachable for the cancel): delete does not return
    as if done while tasks run, nor wait for ever; it says so, and a later delete works."""
    monkeypatch.setattr(slurm_engine, "DELETE_TIMEOUT", 1.0)
    engine.project("team-a", 2)
    uid = engine.submit(JobSpec("stuck", "team-a", ["sleep", "300"], completions=2,
                                parallelism=2))
    store, cluster = engine.store, engine.cluster
    engine.poll_until("2 pods running", lambda: len(
        [p for p in store.pods(uid) if p.status.active]) == 2)
    real_arun = cluster._arun

    async def scancel_lost(*argv: str, **kw: Any) -> str:
        return "" if argv[0] == "scancel" else await real_arun(*argv, **kw)
    cluster._arun = scancel_lost               # type: ignore[method-assign]
    with pytest.raises(SlurmError, match="cancelled 3 times"):
        engine.run(cluster.delete("team-a", "stuck"))
    job = store.job(uid)
    assert job is not None and job.status is JobStatus.RUNNING
    cluster._arun = real_arun                  # type: ignore[method-assign]
    engine.run(cluster.delete("team-a", "stuck"))
    job = store.job(uid)
    assert job is not None and job.status is JobStatus.DELETED


def test_projects_jobs_and_info_run_no_slurm_command_on_the_event_loop(
        engine: Engine, monkeypatch: pytest.MonkeyPatch):
    p = engine.prefix
    run("sacctmgr", "-i", "add", "account", f"{p}taken", "Description=someone else's")
    engine.cluster = engine.open()
    engine.run(engine.cluster._ensure_borrow_qos())
    run("sacctmgr", "-i", "add", "account", f"{p}late", "Description=someone else's")

    def blocking(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a blocking Slurm command on the event loop: {args[0]}")
    monkeypatch.setattr(subprocess, "run", blocking)
    cluster = engine.cluster
    with pytest.raises(Conflict, match="not a podsweep project"):
        cluster.create_project("taken", 1)
    cluster.create_project("team-a", 2)
    cluster.create_project("late", 1)       # made after podsweep last read the accounts
    assert [g["name"] for g in cluster.info().gpus][:1] == [f"{cluster._nodes[0].name} gpu0"]
    ok = cluster.submit(JobSpec("ok", "team-a", ["true"], gpus=1), "admin").uid
    late = cluster.submit(JobSpec("late", "late", ["true"]), "admin").uid
    for launch in [cluster._launches[ok], cluster._launches[late]]:
        engine.run(launch)
    monkeypatch.undo()
    engine.poll_until("ok's end", lambda: engine.done(ok))
    late_job = engine.store.job(late)
    assert late_job is not None and late_job.status is JobStatus.FAILED
    assert "not a podsweep project" in late_job.message, late_job
    # the other account was left as it was: no association of podsweep's user
    assert run("sacctmgr", "-n", "-P", "show", "assoc", "where", f"account={p}late",
               "format=user").split() == []
