"""The local engine's reconcile loop: the policy's decision, applied.

Reconcile: account for the pods that ended, build a :class:`~podsweep.scheduler.Snapshot`
from the store and the in-memory job and pod states, let the pure policy
(:func:`~podsweep.scheduler.decide`) decide, then apply its decision (preempt, then start).
One reconcile is one transaction (:meth:`~.engine.LocalEngine._batch`). What goes into the
snapshot (:func:`job_views`) and what comes of the decision (:func:`launches`) are pure.

A pod's exit, a submit, a delete or a quota change each trigger a reconcile at once
(coalesced within one loop iteration: :meth:`~.engine.LocalEngine.schedule_reconcile`).

A commit that fails because the disk is full (:class:`~podsweep.errors.DiskFull`) is not a
crash: the engine reloads its memory from the store, as it stands without the failed
transaction, pauses, and tries the reconcile again every second until space returns. The
pods that ended meanwhile are accounted for then, once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping

from ...errors import DiskFull
from ...model import PodStatus
from ...runtime import PodProcess
from ...scheduler import JobView, ProjectView, RunningPod, Snapshot, Start, decide
from ..stored import PREEMPTED
from .engine import DISK_FULL_RETRY, LOST, RECONCILE_FAILED
from .recovery import Recovery
from .state import JobState, offer_limit

log = logging.getLogger("podsweep.cluster")


def job_views(states: Iterable[JobState], projects: Iterable[ProjectView], gpus: int,
              cpus: int) -> tuple[JobView, ...]:
    """The jobs the policy may start pods of, each offered at most :func:`offer_limit` of its
    pending pods, on a machine of ``gpus`` GPUs and ``cpus`` CPUs.

    A job that has ended or is being deleted is left out.
    """
    quotas = {p.name: p for p in projects}
    jobs = []
    for state in states:
        spec = state.job.spec
        if state.job.status.done or state.deleting:
            continue
        room = max(0, spec.parallelism - len(state.active))
        quota = quotas.get(spec.project)
        limit = offer_limit(room, ((spec.gpus, quota.quota if quota else 0, gpus),
                                   (spec.cpu, quota.cpu_quota if quota else 0, cpus)))
        jobs.append(JobView(state.job.uid, spec.name, spec.project, spec.gpus,
                            spec.parallelism, state.job.seq, len(state.active),
                            state.pending(limit), spec.cpu))
    return tuple(jobs)


def launches(starts: Iterable[Start],
             states: Mapping[str, JobState]) -> Iterator[tuple[JobState, Start]]:
    """The policy's starts to make, in its order, each with its job's state.

    A start is dropped whose job is gone from memory, has ended or is being deleted. Each is
    checked only once those before it are made: an earlier start of this round may have
    failed the job.
    """
    for start in starts:
        state = states.get(start.job_uid)
        if state is not None and not state.job.status.done and not state.deleting:
            yield state, start


class ReconcileLoop(Recovery):
    """The reconcile: snapshot, decide, apply; paused while the disk is full."""

    def snapshot(self) -> Snapshot:
        projects = tuple(ProjectView(p.name, p.gpus, p.cpus) for p in self.store.projects())
        jobs = job_views(self._states.values(), projects, len(self.gpus), self.cpus)
        # a pod's name is unique within its project only: the policy gets the unique key
        jobs_of = {uid: (s.job.project, s.job.spec.cpu) for uid, s in self._states.items()}
        pods = []
        for key, p in self._pods.items():
            if p.job_uid not in jobs_of:     # rare: a job gone from memory, pods stopping
                job = self.store.job(p.job_uid)
                jobs_of[p.job_uid] = (job.project, job.spec.cpu) if job else ("", 1)
            project, cpu = jobs_of[p.job_uid]
            pods.append(RunningPod(key, p.job_uid, project, p.gpus, p.seq,
                                   p.status is PodStatus.TERMINATING, cpu, p.fraction))
        return Snapshot(tuple(g.index for g in self.gpus), projects, jobs, tuple(pods),
                        self.cpus)

    def reconcile(self) -> None:
        if self._paused:
            # the disk is full: _retry reconciles once a second, nothing else does meanwhile
            self._reconcile_scheduled = False
            return
        self.reconciles += 1
        ended: list[tuple[str, PodProcess, int]] = []
        try:
            with self._batch():
                ended, self._ended = self._ended, []
                self._after_commit(ended.clear)     # accounted for: never again
                for key, proc, code in ended:
                    self._account(key, proc, code)
                for key in list(self._never_started):
                    if key in self._pods:
                        self._finish(self._pods[key], PodStatus.FAILED, None, LOST,
                                     count=False)
                decision = decide(self.snapshot())
                self._shares = dict(decision.shares)
                self._cpu_shares = dict(decision.cpu_shares)
                for key in decision.preempt:
                    self._stop(self._pods[key], PREEMPTED)
                for state, start in launches(decision.starts, self._states):
                    self._start(state, start.index, start.attempt, start.gpus,
                                start.fraction)
                # Whatever asked for a reconcile until now (the pods that ended above) has
                # been served by this one; what follows the commit may ask again.
                self._reconcile_scheduled = False
        except DiskFull:
            # Not a bug: the transaction rolled back, memory follows it, and the same round
            # is tried again once a second (not at once: that would spin on a full disk).
            self._ended = ended + self._ended
            self._reconcile_scheduled = False
            if not self._paused:
                log.warning("the disk is full: nothing changes until space returns "
                            "(retrying every %.0f s)", DISK_FULL_RETRY)
            self._paused = True
            try:
                self._reload()
            finally:
                self.loop.call_later(DISK_FULL_RETRY, self._retry)
        except Exception:
            # Fail-stop. The transaction has rolled back, but memory has not: the ended pods
            # taken from _ended, the job states (take, requeue), _pods, the jobs' copies.
            # Scheduling on from there would act on a state the store does not hold. The
            # pods run on in their own sessions; the next `podsweep up` recovers everything
            # from the store (recover()).
            log.critical("a reconcile failed; the control plane stops here (the next "
                         "podsweep up recovers from the store)", exc_info=True)
            logging.shutdown()
            os._exit(RECONCILE_FAILED)
        except BaseException:
            self._reconcile_scheduled = False
            raise

    def _retry(self) -> None:
        self._paused = False
        self.reconcile()
        if not self._paused:
            log.info("there is space again: the control plane goes on")
