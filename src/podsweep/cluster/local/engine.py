"""The local engine's memory and its transactions, which its other parts build on.

:class:`LocalEngine` holds what the engine keeps in memory (the job states, the active pods,
their processes and the pidfds it watches) and the batch that makes one round of changes one
transaction: its pod ends, job updates, new pods and events are committed together, and only
then are pods signalled and started, so a crash at any point leaves a store that names every
pod that may be running.

The parts build on it in a line, each using those before it: the pod lifecycle
(:mod:`.pods`), recovery (:mod:`.recovery`), the reconcile loop (:mod:`.loop`), and the
Cluster protocol (:mod:`.cluster`). What an earlier part calls of a later one is declared
here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import DiskFull
from ...runtime import GPU, PodProcess, native_supervisor
from ...runtime.process import SupervisorKind
from ...runtime.sandbox import Isolation
from ...runtime.supervisor import DEFAULT_LOG_LIMIT
from ...store import Job, Pod, Store
from ..podenv import base_env
from ..stored import StoredJobs
from .state import JobState

JOB_FAILED, LOST = "JobFailed", "Lost"
RECONCILE_FAILED = 70    # the control plane's exit status when a reconcile raised (EX_SOFTWARE)
DISK_FULL_RETRY = 1.0    # seconds between reconciles while the disk is full


class LocalEngine(StoredJobs):
    """The local engine's memory and transactions; see the module docstring."""

    def __init__(self, home: Path, store: Store, gpus: list[GPU],
                 loop: asyncio.AbstractEventLoop,
                 supervisor: SupervisorKind | None = None,
                 log_limit: int = DEFAULT_LOG_LIMIT, cpus: int | None = None,
                 isolation: Isolation | None = None) -> None:
        self.home = home
        self.log_limit = log_limit    # bytes of each pod's log (podsweep up --log-limit)
        self.isolation = isolation      # None: pods get a clean environment, nothing more
        self.store = store
        self.gpus = gpus
        # the CPUs pods share: those this process may run on, unless podsweep up --cpus
        self.cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
        self.loop = loop
        self.pods_dir = home / "pods"
        self.pods_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._states: dict[str, JobState] = {}
        self._procs: dict[str, PodProcess] = {}     # pod key -> process
        self._pods: dict[str, Pod] = {}             # pod key -> the active pod, as stored
        self._fds: dict[str, int] = {}
        self._ended: list[tuple[str, PodProcess, int]] = []   # (key, proc, code) to account
        self._after: list[Callable[[], None]] | None = None   # inside a batch: after commit
        # what every pod's environment starts from (os.environ is decoded at each read)
        self._base_env = base_env()
        self._reconcile_scheduled = False
        self._paused = False                        # the disk is full: retrying every second
        self._never_started: dict[str, Pod] = {}   # stored as running, found with no process
        self._shares: dict[str, float] = {}
        self._cpu_shares: dict[str, float] = {}
        self._idle: dict[str, asyncio.Event] = {}   # job uid -> set when no pod is active
        self.reconciles = 0
        # The native supervisor where it can be built; else the Python one, forked (the
        # control plane's only other threads are the password hashers, which hold no lock
        # a forked child could need: server/auth.py).
        self._supervisor: SupervisorKind = supervisor or (
            "native" if native_supervisor() else "fork")

    @staticmethod
    def _key(pod: Pod) -> str:
        return f"{pod.job_uid}/{pod.name}"

    def _update_job(self, state: JobState, **fields: Any) -> None:
        """Write the job's fields to the store and to the copy in memory alike."""
        self.store.update_job(state.job.uid, **fields)
        state.job = dataclasses.replace(state.job, **fields)

    def schedule_reconcile(self) -> None:
        if not self._reconcile_scheduled and not self._paused:
            self._reconcile_scheduled = True
            self.loop.call_soon(self.reconcile)

    @contextmanager
    def _batch(self) -> Iterator[None]:
        """One transaction for a round of changes; signals and pod starts follow its commit.

        A batch inside a batch joins it. Outside any batch, what would follow the commit
        runs at once (each store write then commits on its own).
        """
        if self._after is not None:
            yield
            return
        self._after = []
        try:
            with self.store.transaction():
                yield
            after = self._after
        finally:
            self._after = None
        # every one of them, even past one that fails on a full disk: a pod left unsignalled
        # would run on for good; the first such failure is raised at the end
        failed: DiskFull | None = None
        for action in after:
            try:
                action()
            except DiskFull as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    def _after_commit(self, action: Callable[[], None]) -> None:
        if self._after is None:
            action()
        else:
            self._after.append(action)

    # ------------------------------------------------------------ from the later parts

    def reconcile(self) -> None:
        """One round of scheduling (:mod:`.loop`)."""
        raise NotImplementedError

    async def _delete(self, job: Job) -> None:
        """Stop the job's pods and end it as deleted (:mod:`.cluster`)."""
        raise NotImplementedError
