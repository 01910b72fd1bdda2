"""The HTTP API in front of a Cluster, and the server that holds it and the web UI.

Every route needs ``Authorization: Bearer <token>``. Admins manage projects and users and see
everything; a user sees and touches only the jobs of the projects they belong to
(:mod:`.access`). A route reads its request and calls :class:`.service.Service`, as the web
UI's do. Errors are
JSON ``{"detail": "<one line>"}`` with the status of their class
(:func:`podsweep.errors.http_status`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
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
from ..cluster.base import Cluster
from ..errors import (
    PodsweepError,
    TooManyRequests,
    disk_full,
    http_status,
    is_disk_full,
)
from ..model import JOB_DEFAULTS
from ..store import Store
from . import revoke, users_page, web
from .access import Me
from .experiments import ExperimentIndex
from .limits import LoginLimiter
from .service import Service
from .strict import BodyLimit, Quota, Seconds, Strict, validation_error

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
    # the JSON type of each field; the defaults are JobSpec's
    # a whole number, or a fraction of one GPU in (0, 1) as a JSON number (0.5): read
    # exactly by JobSpec (model.parse_gpus), which refuses 1.5 in one line
    gpus: int | float = JOB_DEFAULTS["gpus"]
    parallelism: int = JOB_DEFAULTS["parallelism"]
    completions: int = JOB_DEFAULTS["completions"]
    cpu: int = JOB_DEFAULTS["cpu"]
    volumes: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = JOB_DEFAULTS["working_dir"]
    image: str | None = JOB_DEFAULTS["image"]
    backoff_limit: int = JOB_DEFAULTS["backoff_limit"]
    grace_period: Seconds = JOB_DEFAULTS["grace_period"]


def create_app(cluster: Cluster, store: Store) -> FastAPI:
    app = FastAPI(title="podsweep", version=__version__, docs_url=None, redoc_url=None)
    app.state.store = store
    app.state.cluster = cluster
    app.state.experiments = ExperimentIndex()
    # every read and change of the API and the web UI alike, checked there
    service = app.state.service = Service(cluster, store, app.state.experiments)
    app.state.logins = LoginLimiter.from_env()
    app.include_router(web.router)
    app.include_router(revoke.router)
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

    @app.get("/api/v1/status")
    async def status(user: Me) -> dict[str, Any]:
        info, gpus = await service.info(user)
        return {"version": __version__, "cluster": info.kind, "gpus": gpus,
                "shared_filesystem": info.shared_filesystem, "isolation": info.isolation,
                "user": user.name, "admin": user.admin}

    @app.get("/api/v1/whoami")
    async def whoami(user: Me) -> dict[str, Any]:
        return {"name": user.name, "admin": user.admin, "projects": list(user.projects)}

    @app.get("/api/v1/projects")
    async def projects(user: Me) -> list[dict[str, Any]]:
        return [p.to_dict() for p in await service.projects(user)]

    @app.post("/api/v1/projects", status_code=201)
    async def create_project(body: ProjectIn, user: Me) -> dict[str, Any]:
        return (await service.create_project(user, body.name, body.gpus, body.cpus)).to_dict()

    @app.put("/api/v1/projects/{name}/quota")
    async def set_quota(name: str, body: QuotaIn, user: Me) -> dict[str, Any]:
        now = await service.set_quota(user, name, body.gpus, body.cpus)
        return {"name": name, "deserved": now.deserved, "cpus": now.cpus}

    @app.post("/api/v1/users", status_code=201)
    async def create_user(body: UserIn, user: Me) -> dict[str, Any]:
        token, password = await service.create_user(user, body.name, body.projects,
                                                     body.admin)
        return {"name": body.name, "token": token, "password": password,
                "projects": body.projects}

    @app.get("/api/v1/users")
    async def users(user: Me) -> list[dict[str, Any]]:
        return [{"name": u.name, "admin": u.admin, "projects": list(u.projects)}
                for u in service.users(user)]

    @app.post("/api/v1/jobs", status_code=201)
    async def submit(body: JobIn, user: Me) -> dict[str, Any]:
        return (await service.submit(user, body.model_dump())).to_dict()

    @app.get("/api/v1/jobs")
    async def jobs(user: Me, project: str | None = None) -> list[dict[str, Any]]:
        return [j.to_dict() for j in await service.jobs(user, project)]

    @app.get("/api/v1/jobs/{project}/{name}")
    async def get_job(project: str, name: str, user: Me) -> dict[str, Any]:
        return (await service.job(user, project, name)).to_dict()

    @app.get("/api/v1/jobs/{project}/{name}/experiments")
    async def experiments(project: str, name: str, user: Me) -> dict[str, Any]:
        """The HPO experiments the job's pods wrote to, each with its trials and best."""
        found: dict[str, Any] = service.job_experiments(
            await service.job(user, project, name)).to_dict()
        return found

    @app.delete("/api/v1/jobs/{project}/{name}")
    async def delete_job(project: str, name: str, user: Me) -> dict[str, Any]:
        await service.delete(user, project, name)
        return {"deleted": name, "project": project}

    # the pod is a query parameter: a name with slashes or dots then reaches the exact-name
    # lookup (and its clear refusal) instead of being resolved as a path
    @app.get("/api/v1/jobs/{project}/{name}/logs", response_model=None)
    async def logs(project: str, name: str, pod: str, user: Me, tail: int | None = None,
                   follow: bool = False) -> StreamingResponse:
        stream = await service.pod_log(user, project, name, pod, tail=tail, follow=follow)
        return StreamingResponse(stream, media_type="text/plain")

    return app
