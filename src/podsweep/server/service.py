"""What a caller may read or change on the control plane: the one way there for the API and
the web UI alike.

Each method takes the caller (a :class:`~podsweep.store.User`, found by the API from its
token and by the web UI from its session), asks :mod:`.access` whether they may, then reads
or changes the Cluster or the Store. The routes only turn a request into a call here and
the answer into JSON or a page; so a rule written here holds for both, and neither can go
around it.

Every call of the Cluster goes through :func:`~podsweep.cluster.base.run_view`: a
Kubernetes' views wait on the network, so they run in worker threads, off the event loop;
the other engines' run on it, where their store is. So each method that calls the Cluster is
a coroutine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Request

from ..cluster.base import Cluster, ClusterInfo, JobDetail, JobInfo, ProjectInfo, run_view
from ..errors import NotFound, UsageError
from ..model import JobSpec, check_name
from ..store import Store, User
from . import access
from .auth import hash_password_async, new_password
from .experiments import ExperimentIndex, Found


class Service:
    """The control plane's operations, each checked by :mod:`.access`. One per server."""

    def __init__(self, cluster: Cluster, store: Store, experiments: ExperimentIndex) -> None:
        self.cluster = cluster
        self.store = store
        self.experiments = experiments

    # ------------------------------------------------------------------ the machine

    async def info(self, user: User) -> tuple[ClusterInfo, list[dict[str, Any]]]:
        """The cluster, and its GPUs as ``user`` may see them."""
        info = await run_view(self.cluster, self.cluster.info)
        return info, access.visible_gpus(user, info.gpus)

    # ------------------------------------------------------------------ projects

    async def projects(self, user: User) -> list[ProjectInfo]:
        return access.visible_projects(user, await run_view(self.cluster,
                                                            self.cluster.projects))

    async def create_project(self, user: User, name: str, gpus: int,
                             cpus: int = 0) -> ProjectInfo:
        access.admin_only(user)
        return await run_view(self.cluster, self.cluster.create_project, name, gpus, cpus)

    async def set_quota(self, user: User, name: str, gpus: int | None,
                  cpus: int | None) -> ProjectInfo:
        """Change the quotas given (one left None stays as it is); the project as it now is."""
        access.admin_only(user)
        if gpus is None and cpus is None:
            raise UsageError("give a new quota: gpus, cpus or both")
        await run_view(self.cluster, self.cluster.set_quota, name, gpus, cpus)
        # both quotas as they now are, the one left out included
        return next(p for p in await run_view(self.cluster, self.cluster.projects)
                    if p.name == name)

    def members(self, user: User) -> dict[str, list[str]]:
        """The members of each project ``user`` may see."""
        members: dict[str, list[str]] = {}
        for u in self.store.users():
            for project in u.projects:
                if user.admin or project in user.projects:
                    members.setdefault(project, []).append(u.name)
        return members

    async def _project_and_user(self, user: User, project: str, name: str) -> None:
        access.admin_only(user)
        # the engine holds the projects
        if not await run_view(self.cluster, self.cluster.project_exists, project):
            raise NotFound(f"project {project!r} not found")
        access.existing_user(self.store, name)

    async def add_member(self, user: User, project: str, name: str) -> None:
        await self._project_and_user(user, project, name)
        self.store.add_member(project, name)

    async def remove_member(self, user: User, project: str, name: str) -> None:
        await self._project_and_user(user, project, name)
        self.store.remove_member(project, name)

    # ------------------------------------------------------------------ users

    def users(self, user: User) -> list[User]:
        access.admin_only(user)
        return self.store.users()

    async def create_user(self, user: User, name: str, projects: list[str],
                          admin: bool) -> tuple[str, str]:
        """A new user's CLI token and web UI password (shown once, changeable there)."""
        access.admin_only(user)
        check_name("user", name)
        if self.store.user(name) is not None:
            raise UsageError(f"user {name!r} already exists")
        for i, project in enumerate(projects):
            if project in projects[:i]:     # the members table holds each pair once
                raise UsageError(f"project {project!r} is named twice")
            if not await run_view(self.cluster, self.cluster.project_exists, project):
                raise NotFound(f"project {project!r} not found")
        token = self.store.create_user(name, admin, tuple(projects))
        password = new_password()
        self.store.set_password(name, await hash_password_async(password))
        return token, password

    def delete_user(self, user: User, name: str) -> None:
        access.admin_only(user)
        self.store.delete_user(name)

    def rotate_token(self, user: User, name: str) -> str:
        access.admin_only(user)
        return self.store.rotate_token(name)

    def revoke_tokens(self, user: User, name: str) -> int:
        access.admin_only(user)
        return self.store.revoke_tokens(name)

    # ------------------------------------------------------------------ jobs

    async def submit(self, user: User, body: Mapping[str, Any]) -> JobInfo:
        """A new job from a request's fields (:meth:`JobSpec.from_request`)."""
        await access.may_use(self.cluster, user, body.get("project", ""))
        return await run_view(self.cluster, self.cluster.submit, JobSpec.from_request(body),
                              user.name)

    async def jobs(self, user: User, project: str | None = None) -> list[JobInfo]:
        """The jobs of ``project``, or of every project ``user`` may see."""
        if project is not None:
            await access.may_use(self.cluster, user, project)
            return await run_view(self.cluster, self.cluster.jobs, [project])
        return await run_view(self.cluster, self.cluster.jobs, access.visible(user))

    async def job(self, user: User, project: str, name: str) -> JobDetail:
        await access.may_use(self.cluster, user, project)
        return await run_view(self.cluster, self.cluster.job, project, name)

    def job_experiments(self, detail: JobDetail) -> Found:
        """The HPO experiments the job's pods wrote to in its mounted directories (of a job
        :meth:`job` gave)."""
        job = detail.job
        return self.experiments.find(job.name, job.uid, job.hpo_dirs)

    async def delete(self, user: User, project: str, name: str) -> None:
        await access.may_use(self.cluster, user, project)
        await self.cluster.delete(project, name)

    async def pod_log(self, user: User, project: str, name: str, pod: str,
                      tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        await access.may_use(self.cluster, user, project)
        if tail is not None and tail < 0:
            raise UsageError(f"tail must be at least 0, got {tail}")
        # pod_log checks the pod before it returns, so a bad name is a 404, not a stream
        return await run_view(self.cluster, self.cluster.pod_log, project, name, pod,
                              tail=tail, follow=follow)


def service_of(request: Request) -> Service:
    """The server's :class:`Service` (made by :func:`podsweep.server.app.create_app`)."""
    service: Service = request.app.state.service
    return service
