"""The web UI's Users page (admins): the same ways to take access away as the API's
(:mod:`.revoke`), through the same :class:`.service.Service`: delete a user, remove them
from a project, revoke or rotate their token.

Every action is a form that carries the session's CSRF token. A rotated token is shown once,
in the page that answers the form (never in a URL, where history and logs would keep it).
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import PodsweepError
from ..store import User
from . import access
from .service import service_of
from .web import admin_form, back, page, session

router = APIRouter(include_in_schema=False)


def _users_page(request: Request, user: User, csrf: str, **context: str) -> HTMLResponse:
    return page(request, "users.html", user, csrf, users=service_of(request).users(user),
                **context)


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, message: str = "", error: str = "") -> HTMLResponse:
    user, csrf = session(request)
    access.admin_only(user)
    return _users_page(request, user, csrf, message=message, error=error)


@router.post("/users/{name}/delete")
async def delete_user(request: Request, name: str, csrf: str = Form("")) -> Response:
    admin = admin_form(request, csrf)
    try:
        service_of(request).delete_user(admin, name)
    except PodsweepError as exc:
        return back("/users", error=str(exc))
    return back("/users", message=f"User {name} deleted; their jobs stay.")


@router.post("/users/{name}/token/rotate", response_class=HTMLResponse)
async def rotate_token(request: Request, name: str, csrf: str = Form("")) -> Response:
    admin = admin_form(request, csrf)
    try:
        token = service_of(request).rotate_token(admin, name)
    except PodsweepError as exc:
        return back("/users", error=str(exc))
    _, fresh = session(request)
    return _users_page(request, admin, fresh, rotated=name, token=token,
                       message=f"New token for {name}; the old ones no longer work.")


@router.post("/users/{name}/token/revoke")
async def revoke_token(request: Request, name: str, csrf: str = Form("")) -> Response:
    admin = admin_form(request, csrf)
    try:
        revoked = service_of(request).revoke_tokens(admin, name)
    except PodsweepError as exc:
        return back("/users", error=str(exc))
    return back("/users", message=f"Revoked {revoked} token(s) of {name}.")


@router.post("/users/{name}/projects/{project}/remove")
async def remove_member(request: Request, name: str, project: str,
                        csrf: str = Form("")) -> Response:
    admin = admin_form(request, csrf)
    try:
        await service_of(request).remove_member(admin, project, name)
    except PodsweepError as exc:
        return back("/users", error=str(exc))
    return back("/users", message=f"{name} is no longer a member of {project}.")
