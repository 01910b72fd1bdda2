"""The local engine's start: memory rebuilt from the store, running pods adopted.

After a crash, :meth:`Recovery.recover` re-adopts the pods still running and accounts for
those that ended meanwhile from their supervisors' exit files. Each job's state is rebuilt
from its pods as stored (:func:`rebuild_state`, pure).

A commit that fails because the disk is full (:class:`~podsweep.errors.DiskFull`) is not a
crash: the engine reloads its memory from the store, as it stands without the failed
transaction (:meth:`Recovery._reload`), and the loop tries again (:mod:`.loop`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from ...model import JobStatus, PodStatus
from ...runtime import PodProcess
from ...store import Job, Pod
from ..stored import DELETED
from .engine import LOST
from .pods import PodLifecycle
from .state import JobState

log = logging.getLogger("podsweep.cluster")


def rebuild_state(job: Job, pods: Iterable[Pod]) -> JobState:
    """A job's state in memory, from every pod of it the store holds (any order)."""
    state = JobState(job)
    for pod in pods:
        state.attempts[pod.index] = max(state.attempts.get(pod.index, -1), pod.attempt)
        state.next_fresh = max(state.next_fresh, pod.index + 1)
        if pod.status is PodStatus.SUCCEEDED:
            state.succeeded.add(pod.index)
        elif pod.status.active:
            state.active[pod.index] = pod.attempt
        if pod.status.active and pod.reason == DELETED:
            state.deleting = True   # a delete was under way: finish it, start nothing
    if job.status is JobStatus.DELETED:
        state.deleting = True       # its pods are still stopping: nothing starts
    # ascending, hence already a heap
    state.requeued = [i for i in range(state.next_fresh)
                      if i not in state.succeeded and i not in state.active]
    state.queued = set(state.requeued)
    return state


class Recovery(PodLifecycle):
    """Start-up and recovery: memory from the store, pods adopted or accounted for."""

    def recover(self) -> None:
        """Rebuild job states from the store; adopt running pods, account for ended ones."""
        deleting = self._load(settle=True)
        for key, pod in list(self._pods.items()):
            proc = PodProcess.adopt(Path(pod.dir))
            if proc is None:
                # launched but never started (the control plane died in between): the
                # index runs again; it never ran, so it is not a failure
                self._finish(pod, PodStatus.FAILED, None, LOST, count=False)
                continue
            self._procs[key] = proc
            self._watch(key)
            if pod.status is PodStatus.TERMINATING:
                # the crash may have come between marking it and signalling it; a second
                # SIGTERM is a no-op for its supervisor
                proc.terminate()
        for job in deleting:
            self.loop.create_task(self._delete(job))
        log.info("recovered %d jobs, %d pods running", len(self._states), len(self._procs))
        self.schedule_reconcile()

    def _reload(self) -> None:
        """Memory as the store has it, after a transaction that failed to commit.

        What the failed round changed in memory (job states, pods) is dropped; the pods
        already watched stay watched, and those that ended stay queued in ``_ended`` for
        the next round. A pod the store has running but that has no process here (its
        launch failed on the full disk) is adopted, or else ends as never started.
        """
        self._states.clear()
        self._load(settle=False)
        ended = {key for key, _, _ in self._ended}
        self._never_started = {k: p for k, p in self._never_started.items() if k in self._pods}
        for key, pod in self._pods.items():
            if key in self._procs or key in ended or key in self._never_started:
                continue
            proc = PodProcess.adopt(Path(pod.dir))
            if proc is None:
                self._never_started[key] = pod
            else:
                self._procs[key] = proc
                self._watch(key)

    def _load(self, settle: bool) -> list[Job]:
        """Job states and active pods from the store; the jobs whose delete is under way.

        One read of the unfinished jobs, one of the active pods and one of each job's
        pods, whatever their number.
        """
        # jobs still to run, and finished ones whose pods are still stopping (their GPUs
        # are still held and a delete may be waiting for them)
        jobs = {j.uid: j for j in self.store.jobs(include_done=False)}
        active = self.store.active_pods()
        for uid in {p.job_uid for p in active} - jobs.keys():
            job = self.store.job(uid)
            if job is not None:
                jobs[job.uid] = job
        self._pods = {self._key(p): p for p in active}
        deleting = []
        for job in jobs.values():
            state = self._states[job.uid] = rebuild_state(job, self.store.pods(job.uid))
            if state.deleting:
                deleting.append(job)
            elif settle and not job.status.done:
                # the control plane may have died between a pod's end and the job's
                self._settle_job(state)
        return deleting
