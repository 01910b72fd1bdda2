"""The local cluster's face: the Cluster protocol over the engine's parts.

:class:`LocalCluster` is what ``podsweep up --cluster local`` opens: projects, submits and
deletes, and the views, on top of the reconcile loop (:mod:`.loop`), recovery
(:mod:`.recovery`) and the pod lifecycle (:mod:`.pods`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

from ...errors import DiskFull, NotFound, SetupError, UsageError
from ...model import JobSpec, JobStatus, format_gpus, gpus_number
from ...runtime import discover_gpus, virtual_gpus, wrap_command
from ...runtime.container import INSTALL, find_engine
from ...runtime.sandbox import Isolation, control_plane_dirs, hidden_source, probe
from ...runtime.supervisor import DEFAULT_LOG_LIMIT
from ...store import Job, Pod, Project, Store
from ..base import ClusterInfo, JobInfo, ProjectInfo
from ..stored import DELETED
from .loop import ReconcileLoop
from .state import JobState


class LocalCluster(ReconcileLoop):
    """Pods as local processes; see the package docstring."""

    kind = "local"

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

    # ------------------------------------------------------------ the Cluster protocol

    def info(self) -> ClusterInfo:
        holders: dict[int, tuple[str, str | None]] = {}    # GPU -> (pod, its project)
        # GPU -> the pods holding a share of it: a GPU held in fractions has no one holder
        shares: dict[int, list[dict[str, Any]]] = {}
        for pod in self.store.active_pods():
            state = self._states.get(pod.job_uid)
            job = state.job if state else self.store.job(pod.job_uid)
            project = job.project if job else None
            for g in pod.gpus:
                if pod.fraction is None:
                    holders[g] = (pod.name, project)
                else:
                    shares.setdefault(g, []).append(
                        {"pod": pod.name, "project": project,
                         "fraction": gpus_number(pod.fraction)})
        gpus = []
        for device in self.gpus:
            holder, owner = holders.get(device.index, (None, None))
            gpu: dict[str, Any] = {"index": device.index, "name": device.name,
                                   "pod": holder, "project": owner}
            if device.index in shares:   # only then: a whole-GPU machine's view is as ever
                gpu["shares"] = shares[device.index]
            gpus.append(gpu)
        return ClusterInfo(self.kind, gpus,
                           cpus=self.cpus,
                           isolation="namespaces" if self.isolation else "environment only")

    def create_project(self, name: str, gpus: int, cpus: int = 0) -> ProjectInfo:
        self._check_new_project(name, gpus, cpus)
        self.store.create_project(name, gpus, cpus)
        self.schedule_reconcile()
        return self._project_info(name)

    def set_quota(self, name: str, gpus: int | None = None, cpus: int | None = None) -> None:
        self._check_quota(name, gpus, cpus)
        self.store.set_quota(name, gpus, cpus)
        self.schedule_reconcile()

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
        allocated: dict[str, int | Fraction] = {}
        cpus: dict[str, int] = {}
        for state in self._states.values():
            name = state.job.project
            running[name] = running.get(name, 0) + len(state.active)
            pending[name] = pending.get(name, 0) + state.pending_count()
        for pod in self.store.active_pods():
            holder = self._states.get(pod.job_uid)
            if holder is not None:
                name = holder.job.project
                allocated[name] = allocated.get(name, 0) + \
                    len(pod.gpus) * (pod.fraction or 1)
                cpus[name] = cpus.get(name, 0) + holder.job.spec.cpu
        return [ProjectInfo(p.name, p.gpus, gpus_number(allocated.get(p.name, 0)),
                            running.get(p.name, 0),
                            pending.get(p.name, 0), round(self._shares.get(p.name, 0.0), 2),
                            p.cpus, cpus.get(p.name, 0),
                            round(self._cpu_shares.get(p.name, 0.0), 2))
                for p in projects]

    def submit(self, spec: JobSpec, user: str) -> JobInfo:
        self._check_project_of(spec)
        if spec.image and find_engine() is None:
            raise SetupError(f"-i {spec.image}: running pods in containers needs podman "
                             f"on this machine: {INSTALL} (or drop -i)")
        if spec.gpus > len(self.gpus):
            raise UsageError(f"-g {format_gpus(spec.gpus)}: this machine has {len(self.gpus)} "
                             f"GPU(s)")
        if spec.cpu > self.cpus:
            raise UsageError(f"--cpu {spec.cpu}: pods here share {self.cpus} CPU(s) "
                             f"(podsweep up --cpus N)")
        self._check_volumes(spec, "local")
        for volume in spec.volumes:
            # a process pod's sandbox hides the control plane's directories inside its
            # volumes; podman mounts an image pod's as they are, so none may hold one
            hidden = self.isolation and hidden_source(volume, self.isolation,
                                                      holding=bool(spec.image))
            if hidden:
                raise UsageError(f"-v {volume}: {volume.src} reaches {hidden}, the control "
                                 f"plane's, which pods may not see")
        if spec.image and any("\n" in v or "\r" in v for v in spec.env.values()):
            raise UsageError("-e: a value with a line break cannot go into a container")
        if spec.volumes and not spec.image:
            wrap_command(spec.command, spec.volumes, spec.working_dir)   # a sandbox here?
        # in an image, the working directory is the container's, not this machine's
        self._check_name_free(spec, None if spec.image else spec.working_dir)
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
