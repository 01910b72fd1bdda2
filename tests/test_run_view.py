"""The Cluster seam's contract for views: ``run_view`` calls a store-backed engine's views on
the event loop (the store is the loop's) and a BlockingViews engine's in a worker thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from podsweep.cluster import BlockingViews, run_view
from podsweep.errors import NotFound


class StoreBacked:
    def job(self, project: str, name: str) -> threading.Thread:
        if name == "missing":
            raise NotFound(f"job {name!r} not found in project {project!r}")
        return threading.current_thread()


class Networked(StoreBacked, BlockingViews):
    pass


def test_store_backed_views_run_on_the_loop_and_blocking_ones_in_a_worker_thread():
    async def threads() -> tuple[threading.Thread, threading.Thread, threading.Thread]:
        here = threading.current_thread()
        local, remote = StoreBacked(), Networked()
        return (here, await run_view(local, local.job, "team-a", name="hpo1"),  # type: ignore[arg-type]
                await run_view(remote, remote.job, "team-a", name="hpo1"))  # type: ignore[arg-type]

    loop_thread, local, remote = asyncio.run(threads())
    assert local is loop_thread and remote is not loop_thread


@pytest.mark.parametrize("cluster", [StoreBacked(), Networked()])
def test_a_views_error_reaches_the_caller_from_either(cluster: StoreBacked):
    with pytest.raises(NotFound, match="job 'missing' not found in project 'team-a'"):
        asyncio.run(run_view(cluster, cluster.job, "team-a", "missing"))  # type: ignore[arg-type]
