"""The HTTP API: who may see or touch what, in front of a Cluster.

Every route needs ``Authorization: Bearer <token>``. Admins manage projects and users and see
everything; a user sees and touches only the jobs of the projects they belong to. Errors are
JSON ``{"detail": "<one line>"}`` with the status of their class
(:func:`podsweep.errors.http_status`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from .. import __version__
from ..cluster.base import Cluster, run_view
from ..errors import (
    Forbidden,
    NotFound,
    PodsweepError,
    TooManyRequests,
    Unauthorized,
    UsageError,
    disk_full,
    http_status,
    is_disk_full,
)
from ..model import JobSpec, Volume, check_name
from ..store import Store, User
from . import web
from .auth import hash_password_async, new_password
from .experiments import ExperimentIndex
from .limits import LoginLimiter
from .strict import BodyLimit, Quota, Seconds, Strict, validation_error
from .visibility import visible_gpus

# Request bodies are Strict: exact JSON types, no unknown field (podsweep.server.strict).
# Counts and sizes are bounded where they are checked (podsweep.model); quotas here.

class ProjectIn(Strict):
    name: str
    gpus: Quota
    cpus: Quota = 0    # CPU quota; 0: the project only borrows idle CPUs


class QuotaIn(Strict):
    # the quotas to change; one left out stays as it is
    gpus: Quota | None = None
    cpus: Quota | None = None


class UserIn(Strict):
    name: str
    projects: list[str] = Field(default_factory=list)
    admin: bool = False


class JobIn(Strict):
    name: str
    project: str
    command: list[str]
    gpus: int = 0
    parallelism: int = 1
    completions: int = 1
    cpu: int = 1
    volumes: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    image: str | None = None
    backoff_limit: int = 6
    grace_period: Seconds = 30.0


# async, like every route: FastAPI then runs nothing in worker threads, and the control
# plane can fork pod supervisors from its one thread
async def current_user(request: Request,
                 authorization: Annotated[str | None, Header()] = None) -> User:
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("no token: log in with podsweep login")
    store: Store = request.app.state.store
    user = store.user_for_token(authorization.removeprefix("Bearer ").strip())
    if user is None:
        raise Unauthorized("invalid token: log in again with podsweep login")
    return user


# At module level: FastAPI resolves these (string) annotations in the module's globals.
Me = Annotated[User, Depends(current_user)]


def create_app(cluster: Cluster, store: Store) -> FastAPI:
    app = FastAPI(title="podsweep", version=__version__, docs_url=None, redoc_url=None)
    app.state.store = store
    app.state.cluster = cluster
    app.state.experiments = ExperimentIndex()
    app.state.logins = LoginLimiter.from_env()
    app.include_router(web.router)
    # access imports this module's Me: so here, once this module is loaded
    from . import access, users_page

    app.include_router(access.router)
    app.include_router(users_page.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"),
              name="static")
    app.add_middleware(BodyLimit)
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(PodsweepError)
    async def podsweep_error(request: Request, exc: PodsweepError) -> Response:
        headers = ({"Retry-After": str(exc.retry_after)}
                   if isinstance(exc, TooManyRequests) else None)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc), "error": type(exc).__name__},
                                status_code=http_status(exc), headers=headers)
        return web.templates.TemplateResponse(
            request, "error.html", {"user": None, "error": str(exc)},
            status_code=http_status(exc), headers=headers)

    @app.exception_handler(OSError)
    @app.exception_handler(sqlite3.Error)
    async def disk_error(request: Request, exc: Exception) -> Response:
        # a full disk is the user's to fix, in one line (507); anything else is a bug (500)
        if not is_disk_full(exc):
            raise exc
        return await podsweep_error(request, disk_full(store.path.parent))

    @app.exception_handler(web.LoginRequired)
    async def login_required(_: Request, exc: web.LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)

    def admin_only(user: User) -> None:
        if not user.admin:
            raise Forbidden(f"user {user.name!r} is not an admin")

    # every call of the cluster through run_view: a Kubernetes' views wait on the network,
    # off the loop (podsweep.cluster.base)
    async def may_use(user: User, project: str) -> None:
        if not await run_view(cluster, cluster.project_exists, project):
            raise NotFound(f"project {project!r} not found")
        if not user.admin and project not in user.projects:
            raise Forbidden(f"user {user.name!r} is not a member of project {project!r}")

    def visible(user: User) -> list[str] | None:
        return None if user.admin else list(user.projects)

    @app.get("/api/v1/status")
    async def status(user: Me) -> dict[str, Any]:
        info = await run_view(cluster, cluster.info)
        return {"version": __version__, "cluster": info.kind,
                "gpus": visible_gpus(user, info.gpus),
                "shared_filesystem": info.shared_filesystem, "isolation": info.isolation,
                "user": user.name, "admin": user.admin}

    @app.get("/api/v1/whoami")
    async def whoami(user: Me) -> dict[str, Any]:
        return {"name": user.name, "admin": user.admin, "projects": list(user.projects)}

    @app.get("/api/v1/projects")
    async def projects(user: Me) -> list[dict[str, Any]]:
        allowed = visible(user)
        return [p.to_dict() for p in await run_view(cluster, cluster.projects)
                if allowed is None or p.name in allowed]

    @app.post("/api/v1/projects", status_code=201)
    async def create_project(body: ProjectIn, user: Me) -> dict[str, Any]:
        admin_only(user)
        created = await run_view(cluster, cluster.create_project, body.name, body.gpus,
                                 body.cpus)
        return created.to_dict()

    @app.put("/api/v1/projects/{name}/quota")
    async def set_quota(name: str, body: QuotaIn, user: Me) -> dict[str, Any]:
        admin_only(user)
        if body.gpus is None and body.cpus is None:
            raise UsageError("give a new quota: gpus, cpus or both")
        await run_view(cluster, cluster.set_quota, name, body.gpus, body.cpus)
        # both quotas as they now are, the one left out included
        now = next(p for p in await run_view(cluster, cluster.projects) if p.name == name)
        return {"name": name, "deserved": now.deserved, "cpus": now.cpus}

    @app.post("/api/v1/users", status_code=201)
    async def create_user(body: UserIn, user: Me) -> dict[str, Any]:
        admin_only(user)
        check_name("user", body.name)
        if store.user(body.name) is not None:
            raise UsageError(f"user {body.name!r} already exists")
        for i, project in enumerate(body.projects):
            if project in body.projects[:i]:     # the members table holds each pair once
                raise UsageError(f"project {project!r} is named twice")
            if not await run_view(cluster, cluster.project_exists, project):
                raise NotFound(f"project {project!r} not found")
        token = store.create_user(body.name, body.admin, tuple(body.projects))
        password = new_password()       # for the web UI; shown once, changeable there
        store.set_password(body.name, await hash_password_async(password))
        return {"name": body.name, "token": token, "password": password,
                "projects": body.projects}

    @app.get("/api/v1/users")
    async def users(user: Me) -> list[dict[str, Any]]:
        admin_only(user)
        return [{"name": u.name, "admin": u.admin, "projects": list(u.projects)}
                for u in store.users()]

    @app.post("/api/v1/jobs", status_code=201)
    async def submit(body: JobIn, user: Me) -> dict[str, Any]:
        await may_use(user, body.project)
        spec = JobSpec(name=body.name, project=body.project, command=body.command,
                       gpus=body.gpus, parallelism=body.parallelism,
                       completions=body.completions, cpu=body.cpu,
                       volumes=[Volume.parse(v) for v in body.volumes], env=body.env,
                       working_dir=body.working_dir, image=body.image,
                       backoff_limit=body.backoff_limit, grace_period=body.grace_period)
        return (await run_view(cluster, cluster.submit, spec, user.name)).to_dict()

    @app.get("/api/v1/jobs")
    async def jobs(user: Me, project: str | None = None) -> list[dict[str, Any]]:
        if project is not None:
            await may_use(user, project)
            return [j.to_dict() for j in await run_view(cluster, cluster.jobs, [project])]
        return [j.to_dict() for j in await run_view(cluster, cluster.jobs, visible(user))]

    @app.get("/api/v1/jobs/{project}/{name}")
    async def get_job(project: str, name: str, user: Me) -> dict[str, Any]:
        await may_use(user, project)
        return (await run_view(cluster, cluster.job, project, name)).to_dict()

    @app.get("/api/v1/jobs/{project}/{name}/experiments")
    async def experiments(project: str, name: str, user: Me) -> dict[str, Any]:
        """The HPO experiments the job's pods wrote to, each with its trials and best."""
        await may_use(user, project)
        job = (await run_view(cluster, cluster.job, project, name)).job
        found: dict[str, Any] = app.state.experiments.find(job.name, job.uid,
                                                           job.hpo_dirs).to_dict()
        return found

    @app.delete("/api/v1/jobs/{project}/{name}")
    async def delete_job(project: str, name: str, user: Me) -> dict[str, Any]:
        await may_use(user, project)
        await cluster.delete(project, name)
        return {"deleted": name, "project": project}

    # the pod is a query parameter: a name with slashes or dots then reaches the exact-name
    # lookup (and its clear refusal) instead of being resolved as a path
    @app.get("/api/v1/jobs/{project}/{name}/logs", response_model=None)
    async def logs(project: str, name: str, pod: str, user: Me, tail: int | None = None,
                   follow: bool = False) -> StreamingResponse:
        await may_use(user, project)
        if tail is not None and tail < 0:
            raise UsageError(f"tail must be at least 0, got {tail}")
        # pod_log checks the pod before it returns, so a bad name is a 404, not a stream
        stream = await run_view(cluster, cluster.pod_log, project, name, pod, tail=tail,
                                follow=follow)
        return StreamingResponse(stream, media_type="text/plain")

    return app
