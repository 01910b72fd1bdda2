"""The Cluster protocol: the one seam between the front (API, CLI, UI) and where pods run.

A Cluster owns projects, jobs, pods and their logs. The server calls it after it has decided
who may do what; a Cluster never sees users' tokens. Contract for every implementation:

- ``submit`` validates what it alone can (GPUs the machine has, volumes it can mount, a
  name already taken in the project) and raises :class:`~podsweep.errors.UsageError`
  before changing anything.
- Views (:class:`ProjectInfo`, :class:`JobInfo`, :class:`JobDetail`) are plain values: the
  API serialises them as they are, so every implementation shows the same fields.
- ``delete`` returns once no pod of the job runs any more; where it cannot know that in
  time, it raises rather than return.
- The views and ``create_project``, ``set_quota``, ``project_exists``, ``submit`` and
  ``pod_log`` are synchronous. The server awaits each through :func:`run_view`: on the
  event loop for an engine whose views read the store (local, Slurm: quick, and the store
  is the loop's), in a worker thread for one that is a :class:`BlockingViews` (Kubernetes:
  HTTP calls of up to 13 s would stall every other request).
- ``pod_log`` raises :class:`~podsweep.errors.NotFound` for a pod that is not the job's
  before it returns; the stream it returns yields the log from its start (or its last
  ``tail`` lines), then, with ``follow``, what the pod writes until it ends.
- ``recover`` runs once, before the server takes requests (adopt what a previous control
  plane left running); ``shutdown`` once, when it stops. Neither stops a pod.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

from ..model import MAX_PODS_SHOWN as MAX_PODS_SHOWN  # its old home, still importable
from ..model import JobSpec

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    deserved: int          # GPU quota
    allocated: int | float     # GPUs held by its pods now (a float where they hold shares)
    running: int           # pods running
    pending: int           # pods that would run now if GPUs allowed
    share: float = 0.0     # fair share in GPUs at the moment
    cpus: int = 0          # CPU quota (0: borrows idle CPUs only)
    allocated_cpus: int = 0    # CPUs held by its pods now
    cpu_share: float = 0.0     # fair share in CPUs at the moment

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PodInfo:
    name: str
    index: int
    attempt: int
    status: str
    gpus: list[int]
    created: float
    finished: float | None
    exit_code: int | None
    reason: str | None
    fraction: float | None = None    # its share of its one GPU (local cluster); None: whole

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobInfo:
    uid: str
    name: str
    project: str
    user: str
    status: str
    created: float
    finished: float | None
    # per pod: whole GPUs (an int, as ever) or a share of one GPU (a float in (0, 1), the
    # local cluster's only; model.parse_gpus reads it back exactly)
    gpus: int | float
    parallelism: int
    completions: int
    succeeded: int
    failed: int
    running: int
    pending: int
    allocated: int | float     # GPUs held now (a float where its pods hold shares)
    requested: int | float     # GPUs the job would hold now if GPUs allowed
    command: list[str]
    message: str | None = None
    hpo_dirs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventInfo:
    time: float
    kind: str
    message: str


@dataclass(frozen=True)
class JobDetail:
    job: JobInfo
    pods: list[PodInfo]
    events: list[EventInfo]
    spec: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job.to_dict(), "pods": [p.to_dict() for p in self.pods],
                "events": [asdict(e) for e in self.events], "spec": self.spec}


@dataclass(frozen=True)
class ClusterInfo:
    kind: str
    # each: index, name, the pod holding it and the pod's project (or None); the server
    # hides the pods of other projects from a non-admin (server/access.py). A GPU held in
    # fractions (local cluster) has "shares" too, each {"pod", "project", "fraction"}, and
    # no one "pod"

    gpus: list[dict[str, Any]]
    # Pods see the submitter's filesystem (this machine, or Slurm nodes sharing it), so a job
    # runs where it was submitted from unless --working-dir says otherwise. False where a pod
    # starts in its image's working directory (Kubernetes).
    shared_filesystem: bool = True
    cpus: int | None = None          # the CPUs its pods share, where podsweep schedules them

    # How pods are kept from the control plane and each other: "namespaces" (the local
    # cluster's sandbox), "environment only" (a clean environment, nothing more: the local
    # cluster with --no-isolation, Slurm), "containers" (Kubernetes).
    isolation: str = "environment only"


class Cluster(Protocol):
    """Where pods run: the local machine, Kubernetes or Slurm."""

    def info(self) -> ClusterInfo: ...
    def create_project(self, name: str, gpus: int, cpus: int = 0) -> ProjectInfo: ...
    def set_quota(self, name: str, gpus: int | None = None,
                  cpus: int | None = None) -> None: ...
    def projects(self) -> list[ProjectInfo]: ...
    def project_exists(self, name: str) -> bool: ...
    def submit(self, spec: JobSpec, user: str) -> JobInfo: ...
    def jobs(self, projects: list[str] | None) -> list[JobInfo]: ...
    def job(self, project: str, name: str) -> JobDetail: ...
    def pod_log(self, project: str, name: str, pod: str, tail: int | None = None,
                follow: bool = False) -> AsyncIterator[bytes]: ...
    async def delete(self, project: str, name: str) -> None:
        """Stop the job's pods and end it Deleted; return once no pod of it runs.

        Every engine keeps this: it never returns while a pod of the job may still run. One
        that cannot confirm it within its limit (Slurm: 3 scancels 2 minutes apart;
        Kubernetes: the grace period and 2 minutes) raises an EngineError and leaves the job
        for another delete."""
    def recover(self) -> None: ...
    def shutdown(self) -> None: ...


class BlockingViews:
    """An engine whose views wait on the network, and so must not run on the event loop.

    Its synchronous methods are safe to call from worker threads, several at once, and
    touch no :class:`~podsweep.store.Store` (which is the loop's); :func:`run_view` runs
    them in :meth:`off_loop`. An engine overrides :meth:`off_loop` to use threads of its own.
    """

    async def off_loop(self, call: Callable[[], T]) -> T:
        return await asyncio.to_thread(call)


async def run_view(cluster: Cluster, view: Callable[P, T], /, *args: P.args,
                   **kwargs: P.kwargs) -> T:
    """``view(*args, **kwargs)``, one of ``cluster``'s synchronous methods, called as the
    protocol says: in a worker thread where the cluster is a :class:`BlockingViews`, else
    here on the event loop. ``await run_view(cluster, cluster.jobs, projects)``."""
    if isinstance(cluster, BlockingViews):
        return await cluster.off_loop(functools.partial(view, *args, **kwargs))
    return view(*args, **kwargs)
