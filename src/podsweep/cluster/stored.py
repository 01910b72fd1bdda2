"""What the clusters whose jobs, pods and events live in podsweep's store share.

The local cluster and Slurm both record what runs in the :class:`~podsweep.store.Store`
(Kubernetes keeps it in its API server), so they answer ``jobs``, ``job`` and ``pod_log`` the
same way; each says only how many pods of a job run and wait, and where a pod's log file is.
They check projects, quotas and submits the same way too, and end jobs with the same words.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import Conflict, NotFound, UsageError
from ..model import JobSpec, check_count, check_name, gpus_number
from ..store import Job, Pod, Store
from .base import MAX_PODS_SHOWN, EventInfo, JobDetail, JobInfo, PodInfo
from .logfile import follow_file

PREEMPTED, DELETED = "Preempted", "Deleted"
"""Why a pod was stopped: another project needed its GPUs; its job was deleted."""


def succeeded_message(spec: JobSpec) -> str:
    return f"{spec.completions} pods succeeded"


def failed_message(job: Job) -> str:
    return f"{job.failed} pods failed (backoff limit {job.spec.backoff_limit})"


def exit_reason(code: int) -> str:
    return f"exit code {code}"


class StoredJobs:
    store: Store

    # ---------------------------------------------------------------- checks

    def project_exists(self, name: str) -> bool:
        return self.store.project(name) is not None

    def _check_new_project(self, name: str, gpus: int, cpus: int) -> None:
        check_name("project", name)
        check_count("--gpus", gpus, 0)
        check_count("--cpus", cpus, 0)
        if self.store.project(name) is not None:
            raise Conflict(f"project {name!r} already exists")

    def _check_quota(self, name: str, gpus: int | None, cpus: int | None) -> None:
        if gpus is not None:
            check_count("--gpus", gpus, 0)
        if cpus is not None:
            check_count("--cpus", cpus, 0)
        if self.store.project(name) is None:
            raise NotFound(f"project {name!r} not found")

    def _check_project_of(self, spec: JobSpec) -> None:
        if self.store.project(spec.project) is None:
            raise NotFound(f"project {spec.project!r} not found; an admin creates it with "
                           f"podsweep project create {spec.project} --gpus N")

    @staticmethod
    def _check_volumes(spec: JobSpec, host: str) -> None:
        for volume in spec.volumes:
            volume.require_host(host)
            if not os.path.exists(volume.src):
                raise UsageError(f"-v {volume}: {volume.src} does not exist on this machine")

    def _check_name_free(self, spec: JobSpec, working_dir: str | None) -> None:
        """The working directory (as this machine sees it) exists; the job's name is free."""
        if working_dir and not os.path.isdir(working_dir):
            raise UsageError(f"--working-dir {spec.working_dir} does not exist")
        if self.store.job_by_name(spec.project, spec.name) is not None:
            raise Conflict(f"job {spec.name!r} already exists in project {spec.project!r}; "
                           f"delete it first or choose another name")

    # ---------------------------------------------------------------- views

    def _pod_counts(self, job: Job) -> tuple[int, int]:
        """Pods of the job running now, and pods that would run if GPUs allowed."""
        raise NotImplementedError

    def _log_path(self, pod: Pod) -> Path:
        raise NotImplementedError

    def _job_info(self, job: Job) -> JobInfo:
        running, pending = self._pod_counts(job)
        spec = job.spec
        return JobInfo(job.uid, job.name, job.project, job.user, job.status.value, job.created,
                       job.finished, gpus_number(spec.gpus), spec.parallelism,
                       spec.completions, job.succeeded, job.failed, running, pending,
                       gpus_number(running * spec.gpus),
                       gpus_number(spec.gpus * (running + pending)), list(spec.command),
                       job.message,
                       [v.src for v in spec.volumes])

    def jobs(self, projects: list[str] | None) -> list[JobInfo]:
        return [self._job_info(j) for j in self.store.jobs(projects)]

    def _find(self, project: str, name: str) -> Job:
        job = self.store.job_by_name(project, name)
        if job is None:
            raise NotFound(f"job {name!r} not found in project {project!r}")
        return job

    def job(self, project: str, name: str) -> JobDetail:
        job = self._find(project, name)
        # a job of 100,000 pods is read, sent and shown in part: the server answers it on its
        # only thread, and no one reads 100,000 rows (the counts are in the job's fields)
        pods = [PodInfo(p.name, p.index, p.attempt, p.status.value, list(p.gpus), p.created,
                        p.finished, p.exit_code, p.reason,
                        float(p.fraction) if p.fraction is not None else None)
                for p in self.store.pods(job.uid, MAX_PODS_SHOWN)]
        events = [EventInfo(e.time, e.kind, e.message)
                  for e in self.store.events(job.uid, MAX_PODS_SHOWN)]
        return JobDetail(self._job_info(job), pods, events, job.spec.to_dict())

    def pod_log(self, project: str, name: str, pod: str, tail: int | None = None,
                follow: bool = False) -> AsyncIterator[bytes]:
        job = self._find(project, name)
        found = self.store.pod(job.uid, pod)      # an exact name: no path ever built from it
        if found is None:
            names = ", ".join(p.name for p in self.store.pods(job.uid, 5)) or "none yet"
            raise NotFound(f"pod {pod!r} is not a pod of job {name!r} (its pods: {names})")

        def running() -> bool:
            now = self.store.pod(job.uid, pod)
            return now is not None and now.status.active
        return follow_file(self._log_path(found), tail, follow, running)
