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

from .access import Me
from .service import service_of

router = APIRouter(prefix="/api/v1")


@router.delete("/users/{name}")
async def delete_user(request: Request, name: str, user: Me) -> dict[str, Any]:
    service_of(request).delete_user(user, name)
    return {"deleted": name}


@router.post("/users/{name}/token")
async def rotate_token(request: Request, name: str, user: Me) -> dict[str, Any]:
    """A new token for the user; every older one stops working."""
    token = service_of(request).rotate_token(user, name)
    return {"name": name, "token": token}


@router.delete("/users/{name}/token")
async def revoke_token(request: Request, name: str, user: Me) -> dict[str, Any]:
    """No token of the user works any more (until an admin rotates in a new one)."""
    revoked = service_of(request).revoke_tokens(user, name)
    return {"name": name, "revoked": revoked}


@router.delete("/projects/{project}/members/{name}")
async def remove_member(request: Request, project: str, name: str,
                        user: Me) -> dict[str, Any]:
    await service_of(request).remove_member(user, project, name)
    return {"project": project, "removed": name}
