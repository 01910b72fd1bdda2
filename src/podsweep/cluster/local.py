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

A commit that fails because the disk is full (:class:`~podsweep.errors.DiskFull`) is not a
crash: the engine reloads its memory from the store, as it stands without the failed
transaction, pauses, and tries the reconcile again every second until space returns. The
pods that ended meanwhile are accounted for then, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Conflict, DiskFull, NotFound, UsageError, is_disk_full
from ..model import JobSpec, JobStatus, PodStatus, check_count, check_name, pod_name
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
from ..runtime.sandbox import Isolation, control_plane_dirs, hidden_source, probe
from ..runtime.supervisor import DEFAULT_LOG_LIMIT
from ..scheduler import JobView, PendingPod, ProjectView, RunningPod, Snapshot, decide
from ..store import Job, Pod, Project, Store
from .base import ClusterInfo, JobInfo, ProjectInfo
from .podenv import base_env, pod_env
from .stored import StoredJobs

log = logging.getLogger("podsweep.cluster")

PREEMPTED, DELETED, JOB_FAILED, LOST = "Preempted", "Deleted", "JobFailed", "Lost"
RECONCILE_FAILED = 70    # the control plane's exit status when a reconcile raised (EX_SOFTWARE)
DISK_FULL_RETRY = 1.0    # seconds between reconciles while the disk is full



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


# a project's quota (and the machine) count towards the pods offered up to this much (more
# could change only the shares shown, never what starts: no machine here is larger)
MAX_OFFERED_QUOTA = 4096


def offer_limit(room: int, needs: Iterable[tuple[int, int, int]]) -> int:
    """How many of a job's pending pods one reconcile offers the policy.

    ``needs`` is, for each resource, what one pod of the job takes, its project's quota and
    the machine's amount. The policy's decision, and so the reconcile's work, must not grow
    with the job's size: a job is offered enough for the decision to be the one it would
    make if offered every pod. For each resource a pod takes that is more pods than the
    machine can start (so the first that does not fit still blocks its project, as it
    would), and a demand above its project's quota plus the machine, past which
    water-filling gives the project the same share whatever the demand; the largest of
    these over the resources. Every local pod takes at least one CPU, so a reconcile starts
    at most the machine's CPUs' worth of pods, whatever the jobs' sizes.
    """
    bounds = [(min(quota, MAX_OFFERED_QUOTA) + min(machine, MAX_OFFERED_QUOTA)) // need + 1
              for need, quota, machine in needs if need > 0]
    return min(room, max(bounds)) if bounds else room


class LocalCluster(StoredJobs):
    """Pods as local processes; see the module docstring."""

    kind = "local"

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

    @classmethod
    def open(cls, home: Path, store: Store, loop: asyncio.AbstractEventLoop,
             settings: dict[str, Any]) -> LocalCluster:
        """The GPUs NVML finds, or ``settings["gpus"]`` virtual ones (``podsweep up --gpus``);
        the CPUs of this process's affinity, or ``settings["cpus"]`` (``podsweep up --cpus``)."""
        count = settings.get("gpus")
        gpus = virtual_gpus(int(count)) if count is not None else discover_gpus()
        isolation = None
        if settings.get("isolation", True):
            isolation = Isolation(control_plane_dirs(home))
            why = probe(isolation)
            if why is not None:
                raise UsageError(f"pods cannot be isolated here ({why}); podsweep up "
                                 f"--no-isolation runs them without (docs/security.md)")
        cpus = settings.get("cpus")
        return cls(home, store, gpus, loop,
                   log_limit=int(settings.get("log_limit") or DEFAULT_LOG_LIMIT),
                   cpus=int(cpus) if cpus is not None else None, isolation=isolation)

    # ------------------------------------------------------------ start-up and recovery

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
            elif settle and not job.status.done:
                # the control plane may have died between a pod's end and the job's
                self._settle_job(state)
        return deleting

    # ------------------------------------------------------------ the Cluster protocol

    def info(self) -> ClusterInfo:
        holders: dict[int, tuple[str, str | None]] = {}    # GPU -> (pod, its project)
        for pod in self.store.active_pods():
            state = self._states.get(pod.job_uid)
            job = state.job if state else self.store.job(pod.job_uid)
            for g in pod.gpus:
                holders[g] = (pod.name, job.project if job else None)
        return ClusterInfo(self.kind, [{"index": g.index, "name": g.name,
                                        "pod": holders.get(g.index, (None, None))[0],
                                        "project": holders.get(g.index, (None, None))[1]}
                                       for g in self.gpus],
                           cpus=self.cpus,
                           isolation="namespaces" if self.isolation else "environment only")

    def create_project(self, name: str, gpus: int, cpus: int = 0) -> ProjectInfo:
        check_name("project", name)
        check_count("--gpus", gpus, 0)
        check_count("--cpus", cpus, 0)
        if self.store.project(name) is not None:
            raise Conflict(f"project {name!r} already exists")
        self.store.create_project(name, gpus, cpus)
        self.schedule_reconcile()
        return self._project_info(name)

    def set_quota(self, name: str, gpus: int | None = None, cpus: int | None = None) -> None:
        if gpus is not None:
            check_count("--gpus", gpus, 0)
        if cpus is not None:
            check_count("--cpus", cpus, 0)
        if self.store.project(name) is None:
            raise NotFound(f"project {name!r} not found")
        self.store.set_quota(name, gpus, cpus)
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
        cpus: dict[str, int] = {}
        for state in self._states.values():
            name = state.job.project
            running[name] = running.get(name, 0) + len(state.active)
            pending[name] = pending.get(name, 0) + state.pending_count()
        for pod in self.store.active_pods():
            holder = self._states.get(pod.job_uid)
            if holder is not None:
                name = holder.job.project
                allocated[name] = allocated.get(name, 0) + len(pod.gpus)
                cpus[name] = cpus.get(name, 0) + holder.job.spec.cpu
        return [ProjectInfo(p.name, p.gpus, allocated.get(p.name, 0), running.get(p.name, 0),
                            pending.get(p.name, 0), round(self._shares.get(p.name, 0.0), 2),
                            p.cpus, cpus.get(p.name, 0),
                            round(self._cpu_shares.get(p.name, 0.0), 2))
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
        if spec.cpu > self.cpus:
            raise UsageError(f"--cpu {spec.cpu}: pods here share {self.cpus} CPU(s) "
                             f"(podsweep up --cpus N)")
        for volume in spec.volumes:
            volume.require_host("local")
            if not os.path.exists(volume.src):
                raise UsageError(f"-v {volume}: {volume.src} does not exist on this machine")
            hidden = self.isolation and hidden_source(volume, self.isolation)
            if hidden:
                raise UsageError(f"-v {volume}: {volume.src} lies in {hidden}, the control "
                                 f"plane's, which pods may not see")
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
        try:
            with self._batch():
                for pod in active:
                    self._stop(pod, DELETED)
                if job.status is not JobStatus.DELETED:
                    fields: dict[str, Any] = {"status": JobStatus.DELETED,
                                              "finished": time.time()}
                    if state is not None:
                        self._update_job(state, **fields)
                    else:
                        self.store.update_job(job.uid, **fields)
        except DiskFull:
            # nothing was committed and no pod signalled: the job runs on as it was
            self._reload()
            raise
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

    def snapshot(self) -> Snapshot:
        projects = tuple(ProjectView(p.name, p.gpus, p.cpus) for p in self.store.projects())
        quotas = {p.name: p for p in projects}
        jobs = []
        for state in self._states.values():
            spec = state.job.spec
            if state.job.status.done or state.deleting:
                continue
            room = max(0, spec.parallelism - len(state.active))
            quota = quotas.get(spec.project)
            limit = offer_limit(room, ((spec.gpus, quota.quota if quota else 0, len(self.gpus)),
                                       (spec.cpu, quota.cpu_quota if quota else 0, self.cpus)))
            jobs.append(JobView(state.job.uid, spec.name, spec.project, spec.gpus,
                                spec.parallelism, state.job.seq, len(state.active),
                                state.pending(limit), spec.cpu))
        # a pod's name is unique within its project only: the policy gets the unique key
        jobs_of = {uid: (s.job.project, s.job.spec.cpu) for uid, s in self._states.items()}
        pods = []
        for key, p in self._pods.items():
            if p.job_uid not in jobs_of:     # rare: a job gone from memory, pods stopping
                job = self.store.job(p.job_uid)
                jobs_of[p.job_uid] = (job.project, job.spec.cpu) if job else ("", 1)
            project, cpu = jobs_of[p.job_uid]
            pods.append(RunningPod(key, p.job_uid, project, p.gpus, p.seq,
                                   p.status is PodStatus.TERMINATING, cpu))
        return Snapshot(tuple(g.index for g in self.gpus), projects, tuple(jobs), tuple(pods),
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
                for start in decision.starts:
                    state = self._states.get(start.job_uid)
                    # an earlier start of this round may have failed the job
                    if state is not None and not state.job.status.done and not state.deleting:
                        self._start(state, start.index, start.attempt, start.gpus)
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
        env = pod_env(spec, job_uid=pod.job_uid, pod_name=pod.name, index=pod.index,
                      attempt=pod.attempt, gpus=gpus, base=self._base_env)
        try:
            argv = wrap_command(spec.command, spec.volumes, spec.working_dir, self.isolation)
            # in the sandbox, the sandbox changes into the working dir itself: it may lie
            # inside a volume that exists only in the pod's view
            cwd = None if spec.volumes or self.isolation else spec.working_dir
            proc = PodProcess.launch(PodLaunch(pod_dir, argv, env, cwd,
                                               pod_dir / "pod.log", spec.grace_period,
                                               self.log_limit),
                                     # the loop need not wait for the pod to start
                                     supervisor=self._supervisor, wait=False)
        except Exception as exc:   # a pod that cannot start fails like one that exits 1
            log.exception("pod %s could not start", pod.name)
            if is_disk_full(exc):
                # not the pod's fault: it never started, and runs again once there is space
                self._never_started[self._key(pod)] = pod
                raise DiskFull(str(exc)) from exc
            with contextlib.suppress(OSError):
                pod_dir.mkdir(parents=True, exist_ok=True)
                (pod_dir / "pod.log").write_text(f"podsweep: could not start the pod: {exc}\n")
            with self._batch():      # all of its end or none (a full disk)
                self._finish(self._pods.get(self._key(pod), pod), PodStatus.FAILED, 127,
                             str(exc))
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
        # First, before anything that can raise: a reader left on a pidfd that stays
        # readable would call this again at once, for ever.
        fd = self._fds.pop(key, None)
        if fd is not None:
            self.loop.remove_reader(fd)
            os.close(fd)
        try:
            code = proc.exit_code()
        except OSError:
            log.exception("cannot read the end of pod %s; trying again in a second", key)
            self.loop.call_later(DISK_FULL_RETRY, self._exited, key)
            return
        if code is None:     # woken early: the supervisor is still there
            self._watch(key)
            return
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
                             f"project needs its GPU or CPUs; index {pod.index} will run again")
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
