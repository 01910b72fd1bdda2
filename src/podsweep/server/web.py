"""The web UI: server-rendered pages (Jinja2) with htmx for the parts that refresh.

It reads and changes what the API does through the same :class:`.service.Service`, so with
the same rules (:mod:`.access`): an admin manages projects and sees everything; a user sees
the jobs of their projects only. Every
script and style sheet is served from here (htmx vendored, plotly.js from the plotly
package): the UI works offline.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from .. import __version__
from ..cluster.base import JobDetail
from ..errors import Forbidden, NotFound, PodsweepError, TooManyRequests, UsageError
from ..hpo import HPOError
from ..hpoview import epochs_saved
from ..model import JOB_DEFAULTS, MAX_QUOTA, format_gpus, parse_env, parse_gpus
from ..store import Store, User
from ..timefmt import age
from . import access
from .auth import SESSION_COOKIE, SESSION_LIFETIME, hash_password_async, verify_password
from .experiments import Experiment
from .limits import LoginLimiter
from .service import service_of

HERE = Path(__file__).parent
LOG_LINES = 2000                 # the log page shows the tail; podsweep logs has the rest
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """The page needs a session; the handler answers with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


templates.env.globals.update(version=__version__, age=age)
templates.env.filters["gpus"] = format_gpus     # 2, 0.5, 1.5: GPUs as people read them


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _logins(request: Request) -> LoginLimiter:
    limiter: LoginLimiter = request.app.state.logins
    return limiter


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def session(request: Request) -> tuple[User, str]:
    secret = request.cookies.get(SESSION_COOKIE)
    found = _store(request).session(secret) if secret else None
    if found is None:
        raise LoginRequired(str(request.url.path))
    return found


def check_csrf(request: Request, csrf: str, form_token: str | None) -> None:
    sent = form_token or request.headers.get("X-CSRF-Token")
    if not sent or sent != csrf:
        raise Forbidden("the form is out of date (CSRF token missing or wrong); reload the page")


def page(request: Request, name: str, user: User, csrf: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"user": user, "csrf": csrf, **context})


def back(url: str, message: str = "", error: str = "") -> RedirectResponse:
    query = "&".join(f"{k}={quote(v)}" for k, v in (("message", message), ("error", error))
                     if v)
    return RedirectResponse(url + ("?" + query if query else ""), status_code=303)


# ------------------------------------------------------------------ login

@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/jobs", error: str = "") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": next, "error": error,
                                                              "user": None})


@router.post("/login")
async def login(request: Request, username: str = Form(""), password: str = Form(""),
                next: str = Form("/jobs")) -> Response:
    store = _store(request)
    try:
        # reserved before the hash: guesses sent at once are counted before any is answered
        attempt = _logins(request).reserve(username, _client(request))
    except TooManyRequests as exc:
        return templates.TemplateResponse(
            request, "login.html", {"next": next, "user": None, "username": username,
                                    "error": str(exc)}, status_code=429,
            headers={"Retry-After": str(exc.retry_after)})
    with attempt:
        ok = await verify_password(password, store.password_hash(username))
        if ok:
            attempt.succeeded()
    if not ok:
        return templates.TemplateResponse(
            request, "login.html", {"next": next, "user": None, "username": username,
                                    "error": "Wrong username or password."}, status_code=401)
    secret, _ = store.create_session(username, SESSION_LIFETIME)
    target = next if next.startswith("/") and not next.startswith("//") else "/jobs"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, secret, max_age=int(SESSION_LIFETIME), httponly=True,
                        samesite="strict", path="/")
    return response


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> Response:
    _, token = session(request)
    check_csrf(request, token, csrf)
    _store(request).end_session(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/account", response_class=HTMLResponse)
async def account(request: Request, message: str = "", error: str = "") -> HTMLResponse:
    user, csrf = session(request)
    return page(request, "account.html", user, csrf, message=message, error=error)


@router.post("/account/password")
async def change_password(request: Request, csrf: str = Form(""), current: str = Form(""),
                          new: str = Form(""), again: str = Form("")) -> Response:
    user, token = session(request)
    check_csrf(request, token, csrf)
    store = _store(request)
    try:    # a guess at the current password, from a stolen session, is a login attempt
        attempt = _logins(request).reserve(user.name, _client(request))
    except TooManyRequests as exc:
        return back("/account", error=str(exc))
    with attempt:
        if await verify_password(current, store.password_hash(user.name)):
            attempt.succeeded()
        else:
            return back("/account", error="The current password is wrong.")
    if len(new) < 8 or new != again:
        return back("/account", error="The new password needs at least 8 characters, "
                                      "typed the same twice.")
    # ends every session of the user
    store.set_password(user.name, await hash_password_async(new))
    return back("/login", message="Password changed; log in again.")


# ------------------------------------------------------------------ projects

@router.get("/projects", response_class=HTMLResponse)
async def projects(request: Request, message: str = "", error: str = "") -> HTMLResponse:
    user, csrf = session(request)
    service = service_of(request)
    return page(request, "projects.html", user, csrf, projects=await service.projects(user),
                members=service.members(user), message=message, error=error)


def admin_form(request: Request, csrf: str) -> User:
    """The admin who sent a form. Anyone else is refused here, with a 403, before the
    route's own errors become a message on the page it returns to."""
    user, token = session(request)
    check_csrf(request, token, csrf)
    access.admin_only(user)
    return user


@router.post("/projects")
async def add_project(request: Request, csrf: str = Form(""), name: str = Form(""),
                      gpus: str = Form("0"), cpus: str = Form("0")) -> Response:
    admin = admin_form(request, csrf)
    try:
        cpu_quota = _int(cpus, "CPUs", MAX_QUOTA)
        await service_of(request).create_project(admin, name.strip(), _int(gpus, "GPUs", MAX_QUOTA),
                                         cpu_quota)
    except PodsweepError as exc:
        return back("/projects", error=str(exc))
    and_cpus = f" and {cpu_quota} CPU(s)" if cpu_quota else ""
    return back("/projects", message=f"Project {name} created with {gpus} GPU(s){and_cpus}.")


@router.post("/projects/{name}/quota")
async def set_quota(request: Request, name: str, csrf: str = Form(""),
                    gpus: str = Form("0"), cpus: str = Form("")) -> Response:
    admin = admin_form(request, csrf)
    service = service_of(request)
    try:
        cpu_quota = _int(cpus, "CPUs", MAX_QUOTA) if cpus.strip() else None
        before = next((p.cpus for p in await service.projects(admin) if p.name == name),
                      None)
        await service.set_quota(admin, name, _int(gpus, "GPUs", MAX_QUOTA), cpu_quota)
    except PodsweepError as exc:
        return back("/projects", error=str(exc))
    # the form sends both; the CPUs are news only if they changed
    and_cpus = f" and {cpu_quota} CPU(s)" if cpu_quota not in (None, before) else ""
    return back("/projects", message=f"Project {name} now deserves {gpus} GPU(s){and_cpus}.")


@router.post("/projects/{name}/members")
async def add_member(request: Request, name: str, csrf: str = Form(""),
                     user: str = Form("")) -> Response:
    admin = admin_form(request, csrf)
    try:
        await service_of(request).add_member(admin, name, user.strip())
    except PodsweepError as exc:
        return back("/projects", error=str(exc))
    return back("/projects", message=f"{user} is now a member of {name}.")


def _int(value: str, what: str, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{what} must be a whole number, got {value!r}") from None
    if maximum is not None and number > maximum:
        raise UsageError(f"{what} must be at most {maximum:,}, got {value!r}")
    return number


# ------------------------------------------------------------------ jobs

@router.get("/jobs", response_class=HTMLResponse)
async def jobs(request: Request, message: str = "", error: str = "") -> HTMLResponse:
    user, csrf = session(request)
    service = service_of(request)
    return page(request, "jobs.html", user, csrf, jobs=await service.jobs(user),
                projects=[p.name for p in await service.projects(user)], defaults=JOB_DEFAULTS,
                message=message, error=error)


@router.get("/jobs/table", response_class=HTMLResponse)
async def jobs_table(request: Request) -> HTMLResponse:
    user, csrf = session(request)
    return page(request, "_jobs_table.html", user, csrf, jobs=await service_of(request).jobs(user))


def _shell_line(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:       # an unclosed quote
        raise UsageError(f"cannot read the command as a shell line: {exc}") from None


def job_request(form: Mapping[str, str]) -> dict[str, Any]:
    """The submit form's text as the API's fields, for :meth:`JobSpec.from_request`: the
    command as a shell line, volumes and KEY=VALUE pairs space-separated, numbers as text. A
    field left blank takes its default, which JobSpec holds."""
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(), "project": form.get("project", ""),
        "command": _shell_line(form.get("command", "")),
        "volumes": form.get("volumes", "").split(),
        "env": parse_env(form.get("env", "").split())}
    for field, default in JOB_DEFAULTS.items():
        text = form.get(field, "").strip()
        what = field.replace("_", " ")
        if not text:
            continue
        if field == "gpus":          # a whole number or a share of one GPU (0.5)
            body[field] = parse_gpus(text)
        elif isinstance(default, int):
            body[field] = _int(text, what)
        elif isinstance(default, float):
            try:
                body[field] = float(text)
            except ValueError:
                raise UsageError(f"{what} must be a number, got {text!r}") from None
        else:
            body[field] = text
    return body


@router.post("/jobs")
async def submit(request: Request, csrf: str = Form("")) -> Response:
    user, token = session(request)
    check_csrf(request, token, csrf)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        job = await service_of(request).submit(user, job_request(form))
    except PodsweepError as exc:
        return back("/jobs", error=str(exc))
    return back(f"/jobs/{job.project}/{job.name}", message=f"Job {job.name} submitted.")


async def find_job(request: Request, user: User, project: str, name: str) -> JobDetail:
    return await service_of(request).job(user, project, name)


@router.get("/jobs/{project}/{name}", response_class=HTMLResponse)
async def job_page(request: Request, project: str, name: str, message: str = "",
                   experiment: str | None = None, metric: str | None = None,
                   mode: str | None = None) -> HTMLResponse:
    user, csrf = session(request)
    detail = await find_job(request, user, project, name)
    found = service_of(request).job_experiments(detail)
    # the ranking asked for applies to the experiment whose form was sent (or the only one)
    only = len(found.experiments) == 1
    shown = [experiment_view(e, *((metric, mode) if only or str(e.path) == experiment
                                  else (None, None)))
             for e in found.experiments]
    return page(request, "job.html", user, csrf, detail=detail, job=detail.job,
                experiments=shown, problems=found.problems, message=message)


@router.get("/jobs/{project}/{name}/pods", response_class=HTMLResponse)
async def job_pods(request: Request, project: str, name: str) -> HTMLResponse:
    user, csrf = session(request)
    detail = await find_job(request, user, project, name)
    return page(request, "_pods.html", user, csrf, detail=detail, job=detail.job)


@router.post("/jobs/{project}/{name}/delete")
async def delete(request: Request, project: str, name: str, csrf: str = Form("")) -> Response:
    user, token = session(request)
    check_csrf(request, token, csrf)
    await service_of(request).delete(user, project, name)
    return back("/jobs", message=f"Job {name} deleted.")


@router.get("/jobs/{project}/{name}/log", response_class=HTMLResponse)
async def log_page(request: Request, project: str, name: str, pod: str,
                   partial: bool = False) -> HTMLResponse:
    user, csrf = session(request)
    detail = await find_job(request, user, project, name)
    stream = await service_of(request).pod_log(user, project, name, pod, tail=LOG_LINES)
    chunks = [c async for c in stream]
    text = b"".join(chunks).decode(errors="replace")
    running = any(p.name == pod and p.status in ("Running", "Terminating")
                  for p in detail.pods)
    return page(request, "_log.html" if partial else "log.html", user, csrf, job=detail.job,
                pod=pod, text=text, running=running)


# ------------------------------------------------------------------ results

def experiment_view(e: Experiment, metric: str | None, mode: str | None) -> dict[str, Any]:
    """What the job page shows of one experiment: its ranked table, or why there is none."""
    view: dict[str, Any] = {"name": e.name, "path": str(e.path), "results": e.results,
                            "table": None, "note": e.error, "saved": None}
    res = e.results
    if res is None:
        return view
    if not len(res):
        view["note"] = "No trial has started yet."
        return view
    view["saved"] = epochs_saved(res)
    try:
        metric, mode = res.resolve_metric(metric, mode)
        view["table"] = {"metric": metric, "mode": mode, "best": res.best(metric, mode),
                         "rows": res.ranked(metric, mode), "parameters": res.parameters,
                         "metrics": res.metrics}
    except HPOError:
        view["note"] = "No trial has reported a metric yet."
    except (TypeError, ValueError) as exc:     # a journal with values that do not compare
        view["note"] = f"Cannot rank the trials in {e.path}: {exc}"
    return view


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


@router.get("/jobs/{project}/{name}/results.json")
async def results_json(request: Request, project: str, name: str,
                       experiment: str | None = None, metric: str | None = None,
                       mode: str | None = None) -> JSONResponse:
    """Every trial of one of the job's experiments (by its journal's path; by default the
    only one), for the plots: the best one by ``metric``/``mode`` (default: as declared),
    and the epochs the sweep used against a full run of every trial."""
    user, _ = session(request)
    found = service_of(request).job_experiments(await find_job(request, user, project, name))
    if experiment is not None:
        chosen = found.get(experiment)
    else:
        chosen = found.experiments[0] if len(found.experiments) == 1 else None
    if chosen is None or chosen.results is None:
        paths = ", ".join(str(e.path) for e in found.experiments) or "none"
        raise NotFound(f"job {name!r} has no such HPO experiment (its experiments: {paths})")
    res = chosen.results
    trials = [{"id": t.id, "status": t.status, "attempts": t.attempts, "config": t.config,
               "epochs": t.epochs,
               "reports": [{"epoch": r.epoch, "attempt": r.attempt,
                            "metrics": {k: _finite(v) for k, v in r.metrics.items()}}
                           for r in t.reports]} for t in res]
    # the plots mark the best trial by the same ranking as the page's table (its defaults)
    best: int | None = None
    try:
        metric, mode = res.resolve_metric(metric, mode)
        top = res.best(metric, mode)
        best = top.id if top is not None else None
    except (HPOError, TypeError, ValueError):
        metric = mode = None
    saved = epochs_saved(res)
    return JSONResponse({"experiment": res.experiment, "path": str(chosen.path),
                         "parameters": res.parameters, "metrics": res.metrics,
                         "metric": metric, "mode": mode, "best": best,
                         "pruner": res.pruner, "epochs_used": res.epochs_used,
                         "epochs_full": res.epochs_full,
                         "saved": None if saved is None else {
                             "used": saved.used, "full": saved.full,
                             "percent": saved.percent, "text": str(saved)},
                         "trials": trials})


# ------------------------------------------------------------------ cluster

@router.get("/cluster", response_class=HTMLResponse)
async def cluster_page(request: Request) -> HTMLResponse:
    user, csrf = session(request)
    service = service_of(request)
    _, gpus = await service.info(user)
    projects = await service.projects(user)
    chart = json.dumps({"names": [p.name for p in projects],
                        "allocated": [p.allocated for p in projects],
                        "deserved": [p.deserved for p in projects]})
    return page(request, "cluster.html", user, csrf, gpus=gpus, projects=projects,
                chart=chart)


# ------------------------------------------------------------------ assets

@router.get("/static/plotly.min.js")
async def plotly_js() -> FileResponse:
    import plotly

    return FileResponse(os.path.join(os.path.dirname(plotly.__file__), "package_data",
                                     "plotly.min.js"), media_type="text/javascript")
