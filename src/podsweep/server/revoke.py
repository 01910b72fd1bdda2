"""The API's routes that take access away: delete a user, remove a member, revoke or rotate
a user's token. Admins only.

Each change is one committed transaction before the answer, and the token check reads the
database on every request (no cache), so a revoked or rotated token, or a deleted user's,
is refused from the very next request. A user's jobs stay when the user goes: they are the
project's history. The last admin cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..cluster.base import Cluster
from ..errors import Forbidden, NotFound
from ..store import Store, User
from .app import Me

router = APIRouter(prefix="/api/v1")


def _admin(request: Request, user: User) -> Store:
    if not user.admin:
        raise Forbidden(f"user {user.name!r} is not an admin")
    store: Store = request.app.state.store
    return store


def _existing(store: Store, name: str) -> None:
    if store.user(name) is None:
        raise NotFound(f"user {name!r} not found")


@router.delete("/users/{name}")
async def delete_user(request: Request, name: str, user: Me) -> dict[str, Any]:
    _admin(request, user).delete_user(name)
    return {"deleted": name}


@router.post("/users/{name}/token")
async def rotate_token(request: Request, name: str, user: Me) -> dict[str, Any]:
    """A new token for the user; every older one stops working."""
    token = _admin(request, user).rotate_token(name)
    return {"name": name, "token": token}


@router.delete("/users/{name}/token")
async def revoke_token(request: Request, name: str, user: Me) -> dict[str, Any]:
    """No token of the user works any more (until an admin rotates in a new one)."""
    revoked = _admin(request, user).revoke_tokens(name)
    return {"name": name, "revoked": revoked}


@router.delete("/projects/{project}/members/{name}")
async def remove_member(request: Request, project: str, name: str,
                        user: Me) -> dict[str, Any]:
    store = _admin(request, user)
    cluster: Cluster = request.app.state.cluster    # the engine holds the projects
    if not cluster.project_exists(project):
        raise NotFound(f"project {project!r} not found")
    _existing(store, name)
    store.remove_member(project, name)
    return {"project": project, "removed": name}
