"""The API and the web UI keep one set of access rules (issue 12, item 2), on a real control
plane on loopback: the same answer from both for the same question, and an answer to a user
outside a project that tells nothing of which names exist in it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podsweep.errors import UsageError
from podsweep.model import JOB_DEFAULTS, JobSpec

from ..control.conftest import ControlPlane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path / "home")
    cp.run("up", "--gpus", "2")
    cp.run("project", "create", "team-a", "--gpus", "1")
    cp.run("project", "create", "team-b", "--gpus", "1")
    cp.run("submit", "secret", "-p", "team-b", "--", "sleep", "60")
    yield cp
    cp.stop()


def url(plane: ControlPlane) -> str:
    return str(json.loads((plane.home / "server.json").read_text())["url"])


def new_user(plane: ControlPlane, name: str, *projects: str) -> tuple[str, str]:
    """(token, web password) of a new user."""
    out = plane.run("user", "create", name, *(a for p in projects for a in ("-p", p))).stdout
    token = re.search(r"CLI token: (\S+)", out)
    password = re.search(r"web UI password: (\S+)", out)
    assert token and password, out
    return token.group(1), password.group(1)


class Browser:
    """A web UI session, as a browser holds it: the cookie and the page's CSRF token."""

    def __init__(self, plane: ControlPlane, user: str, password: str) -> None:
        self.web = httpx.Client(base_url=url(plane), timeout=30)
        assert self.web.post("/login", data={"username": user,
                                             "password": password}).status_code == 303
        page = self.web.get("/jobs").text
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        self.csrf = found.group(1)

    def error(self, response: httpx.Response) -> tuple[int, str]:
        """The status and the one-line error an error page shows."""
        shown = re.search(r'role="alert"[^>]*>(.*?)<', response.text, re.S)
        assert shown, response.text
        return response.status_code, html.unescape(shown.group(1)).strip()

    def redirected_error(self, response: httpx.Response) -> str:
        """The error a form's answer sends back to show on the page it returns to."""
        assert response.status_code == 303, response.text
        return str(httpx.URL(response.headers["location"]).params["error"])


def api(plane: ControlPlane, method: str, path: str, token: str) -> tuple[int, str]:
    response = httpx.request(method, f"{url(plane)}/api/v1{path}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return response.status_code, response.json()["detail"]


def test_a_non_member_hears_the_same_whether_the_name_exists_or_not(plane: ControlPlane):
    token, password = new_user(plane, "alice", "team-a")
    browser = Browser(plane, "alice", password)
    # a job that exists, one that does not, in a project that does not exist
    for project, job in (("team-b", "secret"), ("team-b", "nope"), ("ghost", "secret")):
        said = (403, f"user 'alice' is not a member of project '{project}'")
        base = f"/jobs/{project}/{job}"
        for page in ("", "/pods", "/log?pod=secret-0-0", "/results.json"):
            assert browser.error(browser.web.get(base + page)) == said, page
        deleted = browser.web.post(base + "/delete", data={"csrf": browser.csrf})
        assert browser.error(deleted) == said
        submitted = browser.web.post("/jobs", data={"csrf": browser.csrf, "name": job,
                                                    "project": project, "command": "true"})
        assert browser.redirected_error(submitted) == said[1]
        for method, path in (("GET", base), ("GET", base + "/experiments"),
                             ("GET", base + "/logs?pod=secret-0-0"), ("DELETE", base),
                             ("GET", f"/jobs?project={project}")):
            assert api(plane, method, path, token) == said, path
    assert [j["name"] for j in plane.json("list", "-A")] == ["secret"]


def test_the_admin_hears_not_found_from_the_web_ui_as_from_the_api(plane: ControlPlane):
    admin = json.loads((plane.home / "credentials.json").read_text())["token"]
    new_user(plane, "bob")
    # the first admin's web password is printed by up only; a second admin has their own
    out = plane.run("user", "create", "root2", "--admin").stdout
    password = re.search(r"web UI password: (\S+)", out).group(1)
    browser = Browser(plane, "root2", password)
    for project, job, said in (
            ("ghost", "secret", "project 'ghost' not found"),
            ("team-b", "nope", None)):
        status, detail = api(plane, "GET", f"/jobs/{project}/{job}", admin)
        assert status == 404 and (said is None or detail == said), detail
        assert browser.error(browser.web.get(f"/jobs/{project}/{job}")) == (404, detail)
    # a member added to, or removed from, a project that does not exist: the API's words
    status, detail = api(plane, "DELETE", "/projects/ghost/members/bob", admin)
    assert (status, detail) == (404, "project 'ghost' not found")
    for form, data in (("/projects/ghost/members", {"user": "bob"}),
                       ("/users/bob/projects/ghost/remove", {})):
        answer = browser.web.post(form, data={"csrf": browser.csrf, **data})
        assert browser.redirected_error(answer) == detail


def test_a_job_from_the_web_form_is_the_job_from_the_api(plane: ControlPlane):
    """The form's blank fields and the API's left-out ones take the same defaults,
    JobSpec's, and the form offers them."""
    admin = json.loads((plane.home / "credentials.json").read_text())["token"]
    out = plane.run("user", "create", "root2", "--admin").stdout
    browser = Browser(plane, "root2", re.search(r"web UI password: (\S+)", out).group(1))
    form = browser.web.get("/jobs").text
    for field in ("parallelism", "completions", "cpu", "backoff_limit", "grace_period"):
        offered = re.search(rf'name="{field}"[^>]* value="([^"]*)"', form)
        assert offered and float(offered.group(1)) == JOB_DEFAULTS[field], field
    blank = {f: "" for f in JOB_DEFAULTS}
    sent = browser.web.post("/jobs", data={"csrf": browser.csrf, **blank, "name": "by-form",
                                           "project": "team-a", "command": "sleep 60"})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/jobs/team-a/by-form")
    by_api = httpx.post(f"{url(plane)}/api/v1/jobs", timeout=30,
                        headers={"Authorization": f"Bearer {admin}"},
                        json={"name": "by-api", "project": "team-a",
                              "command": ["sleep", "60"]})
    assert by_api.status_code == 201, by_api.text
    specs = [plane.job(name, "team-a")["spec"] for name in ("by-form", "by-api")]
    assert {**specs[0], "name": "by-api"} == specs[1]
    assert {k: specs[1][k] for k in JOB_DEFAULTS} == dict(JOB_DEFAULTS)
    # bad text in the form: one line, as the API would say it, and no job
    for field, text, says in (("gpus", "two", "-g two: expected a whole number of GPUs"),
                              ("grace_period", "soon", "grace period must be a number"),
                              ("command", "echo 'unclosed", "cannot read the command"),
                              ("backoff_limit", "-1", "--backoff-limit must be at least 0")):
        answer = browser.web.post("/jobs", data={"csrf": browser.csrf, "name": "bad",
                                                 "project": "team-a", "command": "true",
                                                 field: text})
        assert says in browser.redirected_error(answer), field
    assert sorted(j["name"] for j in plane.json("list", "-A")) == ["by-api", "by-form",
                                                                   "secret"]


def test_a_request_becomes_a_job_spec_one_way():
    spec = JobSpec.from_request({"name": "j", "project": "p", "command": ["true"],
                                 "volumes": ["/tmp/../tmp:/data:ro"]})
    assert {k: getattr(spec, k) for k in JOB_DEFAULTS} == dict(JOB_DEFAULTS)
    assert [str(v) for v in spec.volumes] == ["/tmp:/data:ro"]
    assert spec == JobSpec.from_request(spec.to_dict())       # what the CLI sends, read back
    with pytest.raises(UsageError, match=r"^unknown job field\(s\): 'gpu'$"):
        JobSpec.from_request({"name": "j", "project": "p", "command": ["true"], "gpu": 1})
    with pytest.raises(UsageError, match=r"^unknown job field\(s\): 'stored'$"):
        JobSpec.from_request({"name": "j", "project": "p", "command": ["true"],
                              "stored": True})
