"""The local cluster: pods as processes on this machine, scheduled by podsweep's own policy.

State lives in the :class:`~podsweep.store.Store`; what runs lives in supervisor processes
(:mod:`podsweep.runtime`), one per pod, each in its own session, so nothing depends on the
control plane being their parent. The control plane watches each supervisor through a pidfd
on its event loop: a pod's exit, a submit, a delete or a quota change each trigger a
reconcile at once (coalesced within one loop iteration), never a sleeping poll.

Reconcile: account for the pods that ended, build a :class:`~podsweep.scheduler.Snapshot`
from the store and the in-memory job and pod states, let the pure policy decide, then apply
its decision (preempt, then start). One reconcile is one transaction: its pod ends, job
updates, new pods and events are committed together, and only then are pods signalled and
started, so a crash at any point leaves a store that names every pod that may be running.

After a crash, :meth:`LocalCluster.recover` re-adopts the pods still running and accounts
for those that ended meanwhile from their supervisors' exit files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Conflict, NotFound, UsageError
from ..model import MAX_GPUS, JobSpec, JobStatus, PodStatus, check_count, check_name, pod_name
from ..runtime import (
    GPU,
    PodLaunch,
    PodProcess,
    discover_gpus,
    native_supervisor,
    virtual_gpus,
    wrap_command,
)
from ..runtime.process import SupervisorKind
from ..scheduler import JobView, PendingPod, ProjectView, RunningPod, Snapshot, decide
from ..store import Job, Pod, Project, Store
from .base import ClusterInfo, JobInfo, ProjectInfo
from .stored import StoredJobs

log = logging.getLogger("podsweep.cluster")

PREEMPTED, DELETED, JOB_FAILED, LOST = "Preempted", "Deleted", "JobFailed", "Lost"
PRIVATE_ENV = {"PODSWEEP_TOKEN", "PODSWEEP_URL"}   # the control plane's, not the pods'
RECONCILE_FAILED = 70    # the control plane's exit status when a reconcile raised (EX_SOFTWARE)



@dataclass
class JobState:
    """What the scheduler needs of a job, kept in memory and rebuilt from the store on start.

    Pending indexes are the fresh ones (``next_fresh`` up to completions) and the requeued
    ones: a heap, with ``queued`` the set of indexes it holds for real. An index taken off
    the queue leaves the set at once and the heap lazily (a stale entry), so that no
    operation scans the queue. Every operation costs O(log n) amortized, and
    :meth:`pending` O(k log k) for the k pods it returns, whatever the job's size: a job of
    100,000 completions costs the scheduler per pod what one of 100 does.
    """

    job: Job
    succeeded: set[int] = field(default_factory=set)
    active: dict[int, int] = field(default_factory=dict)      # index -> attempt
    attempts: dict[int, int] = field(default_factory=dict)    # index -> last attempt
    requeued: list[int] = field(default_factory=list)         # heap, stale entries included
    queued: set[int] = field(default_factory=set)             # the indexes requeued for real
    next_fresh: int = 0
    deleting: bool = False                                    # no new pods, ever

    def pending(self, limit: int) -> tuple[PendingPod, ...]:
        """The next ``limit`` pods to run, lowest index first, in O(limit log limit).

        The requeued heap is walked in order without copying it: a second heap holds the
        frontier of the walk (a node's children enter it once the node is taken).
        """
        out: list[PendingPod] = []
        heap = self.requeued
        frontier: list[tuple[int, int]] = [(heap[0], 0)] if heap else []
        fresh = self.next_fresh
        completions = self.job.spec.completions
        last = -1
        while len(out) < limit:
            if frontier and (fresh >= completions or frontier[0][0] < fresh):
                index, at = heapq.heappop(frontier)
                for child in (2 * at + 1, 2 * at + 2):
                    if child < len(heap):
                        heapq.heappush(frontier, (heap[child], child))
                if index == last or index not in self.queued:
                    continue         # a stale entry, or one index in the heap twice
            elif fresh < completions:
                index, fresh = fresh, fresh + 1
            else:
                break
            last = index
            out.append(PendingPod(index, self.attempts.get(index, -1) + 1))
        return tuple(out)

    def pending_count(self) -> int:
        if self.deleting:
            return 0
        remaining = self.job.spec.completions - len(self.succeeded) - len(self.active)
        return max(0, min(self.job.spec.parallelism - len(self.active), remaining))

    def take(self, index: int, attempt: int) -> None:
        if index in self.queued:
            self.queued.discard(index)
            self._compact()
        elif index > self.next_fresh:
            # fresh indexes skipped over stay pending (pods are started in index order, so
            # this does not happen; if it did, they would not be lost)
            for skipped in range(self.next_fresh, index):
                self.requeue(skipped)
        if index >= self.next_fresh:
            self.next_fresh = index + 1
        self.active[index] = attempt
        self.attempts[index] = attempt

    def requeue(self, index: int) -> None:
        self.active.pop(index, None)
        if index not in self.succeeded and index not in self.queued:
            self.queued.add(index)
            heapq.heappush(self.requeued, index)

    def _compact(self) -> None:
        """Drop stale entries: those on top at once, the rest once they are half the heap."""
        heap = self.requeued
        while heap and heap[0] not in self.queued:
            heapq.heappop(heap)
        if len(heap) > 2 * len(self.queued) + 16:
            self.requeued = sorted(self.queued)     # a sorted list is a heap


MAX_STARTS_PER_RECONCILE = 32   # pods without GPUs offered per job and reconcile


def offer_limit(gpus: int, room: int, quota: int, machine: int) -> int:
    """How many of a job's pending pods one reconcile offers the policy.

    The policy's decision, and so the reconcile's work, must not grow with the job's size.
    A job of pods with GPUs is offered enough for the decision to be the one it would make
    if offered every pod: more pods than the machine can start (so the first that does not
    fit still blocks its project, as it would), and a demand above its project's quota plus
    the machine, past which water-filling gives the project the same fair share whatever
    the demand. Pods without GPUs start whenever offered: a reconcile offers
    :data:`MAX_STARTS_PER_RECONCILE` and the next reconcile the next ones, so that one big
    job never holds the event loop (and every API request) for long.
    """
    if gpus == 0:
        return min(room, MAX_STARTS_PER_RECONCILE)
    return min(room, (min(quota, MAX_GPUS) + machine) // gpus + 1)


class LocalCluster(StoredJobs):
    """Pods as local processes; see the module docstring."""

    kind = "local"

    def __init__(self, home: Path, store: Store, gpus: list[GPU],
                 loop: asyncio.AbstractEventLoop,
                 supervisor: SupervisorKind | None = None) -> None:
        self.home = home
        self.store = store
        self.gpus = gpus
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
        self._base_env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        self._reconcile_scheduled = False
        self._offered_all = True     # the last snapshot offered every pod that could start
        self._shares: dict[str, float] = {}
        self._idle: dict[str, asyncio.Event] = {}   # job uid -> set when no pod is active
        self.reconciles = 0
        # The native supervisor where it can be built; else the Python one, forked (the
        # control plane runs no other thread).
        self._supervisor: SupervisorKind = supervisor or (
            "native" if native_supervisor() else "fork")

    @classmethod
    def open(cls, home: Path, store: Store, loop: asyncio.AbstractEventLoop,
             settings: dict[str, Any]) -> LocalCluster:
        """The GPUs NVML finds, or ``settings["gpus"]`` virtual ones (``podsweep up --gpus``)."""
        count = settings.get("gpus")
        gpus = virtual_gpus(int(count)) if count is not None else discover_gpus()
        return cls(home, store, gpus, loop)

    # ------------------------------------------------------------ start-up and recovery

    def recover(self) -> None:
        """Rebuild job states from the store; adopt running pods, account for ended ones.

        One read of the unfinished jobs, one of the active pods and one of each job's pods,
        whatever their number; what recovery writes is one transaction.
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
            state = self._states[job.uid] = JobState(job)
            for pod in self.store.pods(job.uid):
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
            if state.deleting:
                deleting.append(job)
        with self._batch():
            self._adopt()
        for job in deleting:
            self.loop.create_task(self._delete(job))
        log.info("recovered %d jobs, %d pods running", len(self._states), len(self._procs))
        self.schedule_reconcile()

    def _adopt(self) -> None:
        """Settle the jobs whose end was not recorded; adopt or account for each active pod."""
        for state in list(self._states.values()):
            if not state.deleting and not state.job.status.done:
                # the control plane may have died between a pod's end and the job's
                self._settle_job(state)
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

    # ------------------------------------------------------------ the Cluster protocol

    def info(self) -> ClusterInfo:
        holders: dict[int, str] = {}
        for pod in self.store.active_pods():
            for g in pod.gpus:
                holders[g] = pod.name
        return ClusterInfo(self.kind, [{"index": g.index, "name": g.name,
                                        "pod": holders.get(g.index)} for g in self.gpus])

    def create_project(self, name: str, gpus: int) -> ProjectInfo:
        check_name("project", name)
        check_count("--gpus", gpus, 0)
        if self.store.project(name) is not None:
            raise Conflict(f"project {name!r} already exists")
        self.store.create_project(name, gpus)
        self.schedule_reconcile()
        return self._project_info(name)

    def set_quota(self, name: str, gpus: int) -> None:
        check_count("--gpus", gpus, 0)
        if self.store.project(name) is None:
            raise NotFound(f"project {name!r} not found")
        self.store.set_quota(name, gpus)
        self.schedule_reconcile()

    def project_exists(self, name: str) -> bool:
        return self.store.project(name) is not None

    def projects(self) -> list[ProjectInfo]:
        return self._project_infos(self.store.projects())

    def _project_info(self, name: str) -> ProjectInfo:
        project = self.store.project(name)
        if project is None:
            raise NotFound(f"project {name!r} not found")
        return self._project_infos([project])[0]

    def _project_infos(self, projects: list[Project]) -> list[ProjectInfo]:
        # one pass over the jobs and one read of the active pods, whatever the projects
        running: dict[str, int] = {}
        pending: dict[str, int] = {}
        allocated: dict[str, int] = {}
        for state in self._states.values():
            name = state.job.project
            running[name] = running.get(name, 0) + len(state.active)
            pending[name] = pending.get(name, 0) + state.pending_count()
        for pod in self.store.active_pods():
            holder = self._states.get(pod.job_uid)
            if holder is not None:
                name = holder.job.project
                allocated[name] = allocated.get(name, 0) + len(pod.gpus)
        return [ProjectInfo(p.name, p.gpus, allocated.get(p.name, 0), running.get(p.name, 0),
                            pending.get(p.name, 0), round(self._shares.get(p.name, 0.0), 2))
                for p in projects]

    def submit(self, spec: JobSpec, user: str) -> JobInfo:
        if self.store.project(spec.project) is None:
            raise NotFound(f"project {spec.project!r} not found; an admin creates it with "
                           f"podsweep project create {spec.project} --gpus N")
        if spec.image:
            raise UsageError(f"-i {spec.image}: this cluster runs pods as local processes and "
                             f"has no container runtime configured; drop -i")
        if spec.gpus > len(self.gpus):
            raise UsageError(f"-g {spec.gpus}: this machine has {len(self.gpus)} GPU(s)")
        for volume in spec.volumes:
            volume.require_host("local")
            if not os.path.exists(volume.src):
                raise UsageError(f"-v {volume}: {volume.src} does not exist on this machine")
        if spec.volumes:
            wrap_command(spec.command, spec.volumes, spec.working_dir)   # a sandbox here?
        if spec.working_dir and not os.path.isdir(spec.working_dir):
            raise UsageError(f"--working-dir {spec.working_dir} does not exist")
        if self.store.job_by_name(spec.project, spec.name) is not None:
            raise Conflict(f"job {spec.name!r} already exists in project {spec.project!r}; "
                           f"delete it first or choose another name")
        job = self.store.insert_job(uuid.uuid4().hex[:8], spec, user)
        self._states[job.uid] = JobState(job)
        self.schedule_reconcile()
        return self._job_info(job)

    async def delete(self, project: str, name: str) -> None:
        await self._delete(self._find(project, name))

    async def _delete(self, job: Job) -> None:
        """Stop the job's pods and end it as deleted; returns once its pods are gone.

        The job's end is committed with its pods' stops, in one transaction: a crash at any
        later point leaves a job that recover() knows is deleted, never one whose indexes
        it would run again.
        """
        state = self._states.get(job.uid)
        if state is not None:
            state.deleting = True
        # its active pods from memory, which holds every one the store does: a job of
        # 100,000 pods is as quick to delete as one of 10
        active = [p for p in self._pods.values() if p.job_uid == job.uid]
        with self._batch():
            for pod in active:
                self._stop(pod, DELETED)
            if job.status is not JobStatus.DELETED:
                fields: dict[str, Any] = {"status": JobStatus.DELETED, "finished": time.time()}
                if state is not None:
                    self._update_job(state, **fields)
                else:
                    self.store.update_job(job.uid, **fields)
        if active:
            idle = self._idle.setdefault(job.uid, asyncio.Event())
            await idle.wait()
        self._states.pop(job.uid, None)
        self._idle.pop(job.uid, None)
        self.schedule_reconcile()

    # ------------------------------------------------------------ views

    def _pod_counts(self, job: Job) -> tuple[int, int]:
        state = self._states.get(job.uid)    # callers pass the job as the store has it
        running = len(state.active) if state else 0
        pending = state.pending_count() if state and not job.status.done else 0
        return running, pending

    def _log_path(self, pod: Pod) -> Path:
        return Path(pod.dir) / "pod.log"

    # ------------------------------------------------------------ reconcile

    def schedule_reconcile(self) -> None:
        if not self._reconcile_scheduled:
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
        for action in after:
            action()

    def _after_commit(self, action: Callable[[], None]) -> None:
        if self._after is None:
            action()
        else:
            self._after.append(action)

    def snapshot(self) -> Snapshot:
        projects = tuple(ProjectView(p.name, p.gpus) for p in self.store.projects())
        quotas = {p.name: p.quota for p in projects}
        jobs = []
        self._offered_all = True
        for state in self._states.values():
            spec = state.job.spec
            if state.job.status.done or state.deleting:
                continue
            room = max(0, spec.parallelism - len(state.active))
            limit = offer_limit(spec.gpus, room, quotas.get(spec.project, 0), len(self.gpus))
            if spec.gpus == 0 and limit < state.pending_count():
                self._offered_all = False
            jobs.append(JobView(state.job.uid, spec.name, spec.project, spec.gpus,
                                spec.parallelism, state.job.seq, len(state.active),
                                state.pending(limit)))
        # a pod's name is unique within its project only: the policy gets the unique key
        projects_of = {uid: s.job.project for uid, s in self._states.items()}
        pods = []
        for key, p in self._pods.items():
            if p.job_uid not in projects_of:     # rare: a job gone from memory, pods stopping
                job = self.store.job(p.job_uid)
                projects_of[p.job_uid] = job.project if job else ""
            pods.append(RunningPod(key, p.job_uid, projects_of[p.job_uid], p.gpus, p.seq,
                                   p.status is PodStatus.TERMINATING))
        return Snapshot(tuple(g.index for g in self.gpus), projects, tuple(jobs), tuple(pods))

    def reconcile(self) -> None:
        self.reconciles += 1
        try:
            with self._batch():
                ended, self._ended = self._ended, []
                for key, proc, code in ended:
                    self._account(key, proc, code)
                decision = decide(self.snapshot())
                self._shares = dict(decision.shares)
                for key in decision.preempt:
                    self._stop(self._pods[key], PREEMPTED)
                for start in decision.starts:
                    state = self._states.get(start.job_uid)
                    # an earlier start of this round may have failed the job
                    if state is not None and not state.job.status.done and not state.deleting:
                        self._start(state, start.index, start.attempt, start.gpus)
                # Whatever asked for a reconcile until now (the pods that ended above) has
                # been served by this one; what follows the commit may ask again.
                self._reconcile_scheduled = False
            if not self._offered_all and decision.starts:
                # pods without GPUs were held back (offer_limit): start the next ones in a
                # later loop iteration, after the requests waiting meanwhile are served
                self.schedule_reconcile()
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

    # ------------------------------------------------------------ pods

    @staticmethod
    def _key(pod: Pod) -> str:
        return f"{pod.job_uid}/{pod.name}"

    def _update_job(self, state: JobState, **fields: Any) -> None:
        """Write the job's fields to the store and to the copy in memory alike."""
        self.store.update_job(state.job.uid, **fields)
        state.job = dataclasses.replace(state.job, **fields)

    def _start(self, state: JobState, index: int, attempt: int, gpus: tuple[int, ...]) -> None:
        """Record a new pod; it is started once the record is committed."""
        job = state.job
        spec = job.spec
        name = pod_name(spec.name, index, attempt)
        pod_dir = self.pods_dir / job.uid / name      # made by PodProcess.launch
        pod = self.store.insert_pod(job.uid, index, attempt, name, gpus, str(pod_dir))
        key = self._key(pod)
        self._pods[key] = pod
        state.take(index, attempt)
        where = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
        self.store.event(job.uid, "Started", f"pod {name}{where}")
        if job.status is JobStatus.PENDING:
            self._update_job(state, status=JobStatus.RUNNING)
        self._after_commit(lambda: self._launch(state, pod))

    def _launch(self, state: JobState, pod: Pod) -> None:
        spec = state.job.spec
        pod_dir = Path(pod.dir)
        gpus = pod.gpus
        env = {**self._base_env, **spec.env,
               "PODSWEEP_JOB_NAME": spec.name, "PODSWEEP_JOB_UID": pod.job_uid,
               "PODSWEEP_PROJECT": spec.project, "PODSWEEP_POD_NAME": pod.name,
               "PODSWEEP_POD_INDEX": str(pod.index), "JOB_COMPLETION_INDEX": str(pod.index),
               "PODSWEEP_POD_ATTEMPT": str(pod.attempt),
               # NVML numbers GPUs in PCI bus order; make CUDA number them the same way
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
               "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
               "OMP_NUM_THREADS": str(spec.cpu)}
        try:
            argv = wrap_command(spec.command, spec.volumes, spec.working_dir)
            # with volumes, the sandbox changes into the working dir itself: it may lie
            # inside a volume that exists only in the pod's view
            cwd = None if spec.volumes else spec.working_dir
            proc = PodProcess.launch(PodLaunch(pod_dir, argv, env, cwd,
                                               pod_dir / "pod.log", spec.grace_period),
                                     # the loop need not wait for the pod to start
                                     supervisor=self._supervisor, wait=False)
        except Exception as exc:   # a pod that cannot start fails like one that exits 1
            log.exception("pod %s could not start", pod.name)
            pod_dir.mkdir(parents=True, exist_ok=True)
            (pod_dir / "pod.log").write_text(f"podsweep: could not start the pod: {exc}\n")
            self._finish(self._pods.get(self._key(pod), pod), PodStatus.FAILED, 127, str(exc))
            return
        key = self._key(pod)
        self._procs[key] = proc
        self._watch(key)

    def _watch(self, key: str) -> None:
        proc = self._procs[key]
        fd = proc.pidfd()
        if fd is None:
            self.loop.call_soon(self._exited, key)
            return
        self._fds[key] = fd
        self.loop.add_reader(fd, self._exited, key)

    def _exited(self, key: str) -> None:
        """A supervisor exited: stop watching it, and let the next reconcile account for it."""
        proc = self._procs.get(key)
        if proc is None:
            return
        code = proc.exit_code()
        if code is None:     # woken early: the supervisor is still there
            return
        fd = self._fds.pop(key, None)
        if fd is not None:
            self.loop.remove_reader(fd)
            os.close(fd)
        del self._procs[key]
        self._ended.append((key, proc, code))
        self.schedule_reconcile()

    def _account(self, key: str, proc: PodProcess, code: int) -> None:
        pod = self._pods.get(key)
        if pod is None:
            return
        if pod.reason == DELETED:
            self._finish(pod, PodStatus.DELETED, code, DELETED, count=False)
        elif pod.reason == JOB_FAILED:
            self._finish(pod, PodStatus.FAILED, code, "stopped: the job failed", count=False)
        elif pod.reason == PREEMPTED and code != 0:   # exit 0 in its grace period: it finished
            self._finish(pod, PodStatus.PREEMPTED, code, PREEMPTED, count=False)
        elif code == 0:
            self._finish(pod, PodStatus.SUCCEEDED, code, None)
        else:
            self._finish(pod, PodStatus.FAILED, code,
                         "supervisor lost" if proc.lost else f"exit code {code}")

    def _stop(self, pod: Pod, reason: str) -> None:
        """SIGTERM a pod; its supervisor SIGKILLs it after the job's grace period."""
        key = self._key(pod)
        pod = self._pods.get(key, pod)
        if pod.status is PodStatus.TERMINATING:
            if reason == DELETED:
                self.store.update_pod(pod, reason=DELETED)
                self._pods[key] = dataclasses.replace(pod, reason=DELETED)
            return
        self.store.update_pod(pod, status=PodStatus.TERMINATING, reason=reason)
        self._pods[key] = dataclasses.replace(pod, status=PodStatus.TERMINATING, reason=reason)
        if reason == PREEMPTED:
            self.store.event(pod.job_uid, "Preempted",
                             f"pod {pod.name}: its project is over its fair share and another "
                             f"project needs the GPU; index {pod.index} will run again")
        proc = self._procs.get(key)
        if proc is not None:
            # once the store says so: a crash in between must not leave a pod that was
            # asked to stop recorded as one that failed
            self._after_commit(proc.terminate)

    def _finish(self, pod: Pod, status: PodStatus, code: int | None, reason: str | None,
                count: bool = True) -> None:
        now = time.time()
        self.store.update_pod(pod, status=status, exit_code=code, reason=reason, finished=now)
        self._pods.pop(self._key(pod), None)
        state = self._states.get(pod.job_uid)
        if state is None:
            idle = self._idle.get(pod.job_uid)
            if idle is not None and not any(p.job_uid == pod.job_uid
                                            for p in self._pods.values()):
                idle.set()
            return
        if status is PodStatus.SUCCEEDED:
            state.succeeded.add(pod.index)
            state.active.pop(pod.index, None)
            self._update_job(state, succeeded=len(state.succeeded))
            self.store.event(pod.job_uid, "Succeeded", f"pod {pod.name}")
        else:
            state.requeue(pod.index)
            if status is PodStatus.FAILED and count:
                self._update_job(state, failed=state.job.failed + 1)
                self.store.event(pod.job_uid, "Failed", f"pod {pod.name}: {reason}")
            elif status is PodStatus.FAILED and reason == LOST:
                self.store.event(pod.job_uid, "Lost", f"pod {pod.name} never started; it "
                                 f"runs again")
        self._settle_job(state)
        if not state.active:
            idle = self._idle.get(state.job.uid)
            if idle is not None:
                idle.set()
            if state.job.status.done and not state.deleting:
                del self._states[state.job.uid]     # nothing of it is scheduled any more
        self.schedule_reconcile()

    def _settle_job(self, state: JobState) -> None:
        """End the job if its pods have succeeded or failed enough (idempotent)."""
        job = state.job
        if job.succeeded != len(state.succeeded):
            self._update_job(state, succeeded=len(state.succeeded))
            job = state.job
        if job.status.done:
            return
        if len(state.succeeded) >= job.spec.completions:
            self._end_job(state, JobStatus.SUCCEEDED, f"{job.spec.completions} pods succeeded")
        elif job.failed > job.spec.backoff_limit:
            self._end_job(state, JobStatus.FAILED,
                          f"{job.failed} pods failed (backoff limit {job.spec.backoff_limit})")

    def _end_job(self, state: JobState, status: JobStatus, message: str) -> None:
        uid = state.job.uid
        self._update_job(state, status=status, finished=time.time(), message=message)
        self.store.event(uid, status.value, message)
        for pod in [p for p in self._pods.values() if p.job_uid == uid]:
            self._stop(pod, JOB_FAILED)

    def shutdown(self) -> None:
        """Stop watching (the pods go on running: a restarted control plane adopts them)."""
        for key, fd in list(self._fds.items()):
            self.loop.remove_reader(fd)
            os.close(fd)
            del self._fds[key]
