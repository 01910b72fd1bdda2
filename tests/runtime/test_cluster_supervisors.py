"""The local cluster on each supervisor it may use: the native one, and the Python one
forked (where no C compiler exists). A real in-process control plane, real pods."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from podsweep.cluster.local import LocalCluster
from podsweep.model import JobSpec, JobStatus, PodStatus
from podsweep.runtime import virtual_gpus
from podsweep.runtime.native import compiler
from podsweep.runtime.process import SupervisorKind
from podsweep.store import Store


@pytest.mark.parametrize("supervisor", ["native", "fork"])
def test_a_job_runs_to_the_end_and_a_restarted_control_plane_finishes_it(
        tmp_path: Path, supervisor: SupervisorKind) -> None:
    if supervisor == "native" and compiler() is None and \
            os.environ.get("PODSWEEP_REQUIRE_NATIVE") != "1":     # CI: never skipped
        pytest.skip("no C compiler here")
    home = tmp_path / "home"
    home.mkdir()
    runs = tmp_path / "runs"
    runs.mkdir()
    store = Store(home / "podsweep.db")
    store.create_project("team-a", 2)
    spec = JobSpec(name="j", project="team-a", gpus=1, parallelism=2, completions=8,
                   command=["sh", "-c", f'echo "$CUDA_VISIBLE_DEVICES" >> {runs}/'
                            f'$PODSWEEP_POD_INDEX; [ $PODSWEEP_POD_INDEX -lt 4 ] || '
                            f'sleep 0.5'])

    async def first() -> str:
        cluster = LocalCluster(home, store, virtual_gpus(2), asyncio.get_running_loop(),
                               supervisor=supervisor)
        cluster.recover()
        uid = cluster.submit(spec, "me").uid
        deadline = time.monotonic() + 30
        while len(list(runs.iterdir())) < 6:    # the slow ones under way: "crash" now
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        cluster.shutdown()
        return uid

    async def second(uid: str) -> None:
        cluster = LocalCluster(home, store, virtual_gpus(2), asyncio.get_running_loop(),
                               supervisor=supervisor)
        cluster.recover()
        deadline = time.monotonic() + 30
        while (job := store.job(uid)) is not None and not job.status.done:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

    uid = asyncio.run(first())
    asyncio.run(second(uid))
    job = store.job(uid)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.succeeded == 8
    pods = store.pods(uid)
    assert [p.status for p in pods] == [PodStatus.SUCCEEDED] * 8     # each index once
    assert sorted(int(p.name) for p in runs.iterdir()) == list(range(8))
    # each pod saw the one GPU it was given
    assert all(p.read_text() in ("0\n", "1\n") for p in runs.iterdir())
