"""The views of a cluster whose jobs, pods and events live in podsweep's store.

The local cluster and Slurm both record what runs in the :class:`~podsweep.store.Store`
(Kubernetes keeps it in its API server), so they answer ``jobs``, ``job`` and ``pod_log`` the
same way; each says only how many pods of a job run and wait, and where a pod's log file is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from ..errors import NotFound
from ..store import Job, Pod, Store
from .base import MAX_PODS_SHOWN, EventInfo, JobDetail, JobInfo, PodInfo
from .logfile import follow_file


class StoredJobs:
    store: Store

    def _pod_counts(self, job: Job) -> tuple[int, int]:
        """Pods of the job running now, and pods that would run if GPUs allowed."""
        raise NotImplementedError

    def _log_path(self, pod: Pod) -> Path:
        raise NotImplementedError

    def _job_info(self, job: Job) -> JobInfo:
        running, pending = self._pod_counts(job)
        spec = job.spec
        return JobInfo(job.uid, job.name, job.project, job.user, job.status.value, job.created,
                       job.finished, spec.gpus, spec.parallelism, spec.completions,
                       job.succeeded, job.failed, running, pending, running * spec.gpus,
                       spec.gpus * (running + pending), list(spec.command), job.message,
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
                        p.finished, p.exit_code, p.reason)
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
