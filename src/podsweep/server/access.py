"""Who may see or touch what: the one set of rules the API and the web UI share.

An admin manages projects and users and sees everything. A user sees and touches only the
jobs of the projects they belong to; of the machine, they see every GPU, but one held by a
pod of another project shows only that it is in use (:func:`visible_gpus`).

A user asking for a project they are not a member of hears the same answer (Forbidden)
whether the project, or the job asked for in it, exists or not: the answer must not tell
them which names exist. Only those who may see a project hear that it, or a job in it, is
not there (NotFound).

The API finds its caller by the bearer token (:data:`Me`), the web UI by its session
cookie (:func:`podsweep.server.web.session`); from there both ask the functions here,
through :class:`podsweep.server.service.Service`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from ..cluster.base import Cluster, ProjectInfo, run_view
from ..errors import Forbidden, NotFound, Unauthorized
from ..store import Store, User


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


def admin_only(user: User) -> None:
    if not user.admin:
        raise Forbidden(f"user {user.name!r} is not an admin")


async def may_use(cluster: Cluster, user: User, project: str) -> None:
    """Raise unless ``user`` may see and touch the jobs of ``project``, which exists.

    Membership is asked first: a non-member hears Forbidden for a project that exists and
    for one that does not alike."""
    if not user.admin and project not in user.projects:
        raise Forbidden(f"user {user.name!r} is not a member of project {project!r}")
    if not await run_view(cluster, cluster.project_exists, project):
        raise NotFound(f"project {project!r} not found")


def visible(user: User) -> list[str] | None:
    """The projects whose jobs ``user`` sees, as :meth:`Cluster.jobs` takes them (None:
    every project)."""
    return None if user.admin else list(user.projects)


def visible_projects(user: User, projects: list[ProjectInfo]) -> list[ProjectInfo]:
    """The projects ``user`` may see, of ``projects``."""
    return [p for p in projects if user.admin or p.name in user.projects]


def existing_user(store: Store, name: str) -> None:
    if store.user(name) is None:
        raise NotFound(f"user {name!r} not found")


def visible_gpus(user: User, gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each GPU as ``user`` may see it: index, name, in_use, and pod and project (None for
    an idle GPU, or one held by a project the user is not a member of).

    A pod's name is its job's name, and a job's name can say what another team works on.
    Every engine's :meth:`~podsweep.cluster.base.Cluster.info` names each holder's project,
    so the filter needs no engine of its own."""
    def yours(project: Any) -> bool:
        return user.admin or project in user.projects

    shown = []
    for gpu in gpus:
        shares = gpu.get("shares")
        in_use = gpu.get("pod") is not None or bool(shares)
        mine = yours(gpu.get("project"))
        one = {"index": gpu["index"], "name": gpu["name"], "in_use": in_use,
               "pod": gpu.get("pod") if mine else None,
               "project": gpu.get("project") if mine else None}
        if shares is not None:     # held in fractions: each share shown as its pod is
            one["shares"] = [{"pod": s["pod"] if yours(s["project"]) else None,
                              "project": s["project"] if yours(s["project"]) else None,
                              "fraction": s["fraction"]} for s in shares]
        shown.append(one)
    return shown
