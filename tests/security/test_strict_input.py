"""Issue 10, item 7: input is strict. Each bad input to a real control plane is refused with
its status and one line, and nothing stored changes (read back before and after).

The API is driven with httpx, the CLI as a user types it (``podsweep ...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from podsweep.errors import UsageError
from podsweep.model import MAX_ARG_BYTES, MAX_COMMAND_BYTES, JobSpec

from ..control.conftest import ControlPlane

MiB = 1024 * 1024


class Api:
    def __init__(self, plane: ControlPlane) -> None:
        url = json.loads((plane.home / "server.json").read_text())["url"]
        token = json.loads((plane.home / "credentials.json").read_text())["token"]
        self.url = url
        self.http = httpx.Client(base_url=f"{url}/api/v1", timeout=120,
                                 headers={"Authorization": f"Bearer {token}"})

    def state(self) -> dict[str, Any]:
        """What the control plane has stored, as the API reads it."""
        return {what: self.http.get(f"/{what}").json() for what in ("users", "projects", "jobs")}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # one control plane for the module: each test reads what is stored before and after
    cp = ControlPlane(tmp_path_factory.mktemp("strict") / "home")
    cp.run("up", "--gpus", "2")
    cp.run("project", "create", "team-a", "--gpus", "2")
    cp.run("user", "create", "bob", "-p", "team-a")
    yield cp
    cp.stop()


@pytest.fixture
def api(plane: ControlPlane) -> Iterator[Api]:
    client = Api(plane)
    yield client
    client.http.close()


def refused(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 300, detail
    for word in words:
        assert word in detail, detail
    return detail


JOB = {"name": "bad", "project": "team-a", "command": ["true"]}


@pytest.mark.parametrize(("method", "path", "body", "words"), [
    # no coercion: a string, a bool or a float is not a number, nor "yes" a bool
    ("post", "/users", {"name": "eve", "admin": "yes"}, ["admin", "boolean"]),
    ("post", "/users", {"name": "eve", "admin": 1}, ["admin", "boolean"]),
    ("post", "/projects", {"name": "team-x", "gpus": True}, ["gpus", "integer"]),
    ("post", "/projects", {"name": "team-x", "gpus": "1"}, ["gpus", "integer"]),
    ("put", "/projects/team-a/quota", {"gpus": 1e20}, ["gpus"]),
    ("put", "/projects/team-a/quota", {"gpus": 10**20}, ["gpus", "1000000"]),
    ("put", "/projects/team-a/quota", {"gpus": -1}, ["gpus"]),
    ("post", "/jobs", {**JOB, "gpus": True}, ["gpus", "integer"]),
    ("post", "/jobs", {**JOB, "gpus": "1"}, ["gpus", "integer"]),
    ("post", "/jobs", {**JOB, "completions": 2.0}, ["completions", "integer"]),
    ("post", "/jobs", {**JOB, "command": "true"}, ["command", "list"]),
    ("post", "/jobs", {**JOB, "env": {"A": 1}}, ["env.A", "string"]),
    ("post", "/jobs", {**JOB, "grace_period": "30"}, ["grace_period"]),
    ("post", "/jobs", {**JOB, "grace_period": 10**6}, ["grace_period"]),
    # unknown fields are refused, not ignored
    ("post", "/users", {"name": "eve", "is_admin": True}, ["is_admin", "not permitted"]),
    ("post", "/projects", {"name": "team-x", "gpus": 1, "cpu": 4}, ["cpu", "not permitted"]),
    ("post", "/jobs", {**JOB, "completion": 3}, ["completion", "not permitted"]),
    ("put", "/projects/team-a/quota", {"gpu": 1}, ["gpu", "not permitted"]),
    ("put", "/projects/team-a/quota", {"gpu": 1, "cpu": 1}, ["gpu", "not permitted", "1 more"]),
])
def test_the_schema_refuses_in_one_line(api: Api, method: str, path: str, body: Any,
                                        words: list[str]):
    before = api.state()
    refused(api.http.request(method, path, json=body), 422, *words)
    assert api.state() == before


def test_json_only_python_reads_is_refused(api: Api):
    before = api.state()
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = ('{"name": "bad", "project": "team-a", "command": ["true"], '
                f'"grace_period": {literal}}}')
        refused(api.http.post("/jobs", content=body,
                              headers={"Content-Type": "application/json"}),
                422, "grace_period", "finite")
    refused(api.http.post("/jobs", content=b'{"name": ',
                          headers={"Content-Type": "application/json"}), 422, "not valid JSON")
    assert api.state() == before


def test_a_project_named_twice_for_a_new_user_is_a_400(api: Api):
    before = api.state()
    refused(api.http.post("/users", json={"name": "eve", "projects": ["team-a", "team-a"]}),
            400, "'team-a' is named twice")
    assert api.state() == before
    # the same user, asked for properly, is created
    assert api.http.post("/users", json={"name": "eve", "projects": ["team-a"]}).status_code \
        == 201


def test_bodies_over_1_mib_are_refused_unread(api: Api):
    before = api.state()
    big = {**JOB, "env": {"BLOB": "x" * (10 * MiB)}}      # a 10 MB body, Content-Length
    refused(api.http.post("/jobs", json=big), 413, "over 1048576 bytes")

    def chunks() -> Iterator[bytes]:                     # chunked: no Content-Length
        yield b'{"name": "bad", "project": "team-a", "command": ["true"], "env": {"B": "'
        for _ in range(10):
            yield b"x" * MiB
        yield b'"}}'

    refused(api.http.post("/jobs", content=chunks(),
                          headers={"Content-Type": "application/json"}), 413, "over")
    # a login form is a body too
    refused(httpx.post(f"{api.url}/login", content=b"username=" + b"a" * (2 * MiB),
                       headers={"Content-Type": "application/x-www-form-urlencoded"}), 413)
    assert api.state() == before
    # and the server still takes a body just under the limit (it is a command too big to
    # run: the command-size limit answers, not the body limit)
    near = {**JOB, "env": {"BLOB": "x" * (MiB - 1000)}}
    refused(api.http.post("/jobs", json=near), 400, "environment variable BLOB")
    assert api.state() == before


def test_a_command_too_big_to_exec_is_refused_at_submit(plane: ControlPlane, api: Api):
    before = api.state()
    one = "x" * MAX_ARG_BYTES                             # with its NUL: one byte too many
    refused(api.http.post("/jobs", json={**JOB, "command": ["echo", one]}), 400,
            "argument 1", "131,072")
    third = "y" * (MAX_COMMAND_BYTES // 3)
    refused(api.http.post("/jobs", json={**JOB, "command": ["echo", third, third, third]}),
            400, "262,144")
    refused(api.http.post("/jobs", json={**JOB, "env": {"A": third, "B": third, "C": third}}),
            400, "262,144")
    # the CLI refuses the same before it sends anything
    proc = plane.run("submit", "bad", "-p", "team-a", "-e", f"A={third}", "-e", f"B={third}",
                     "--", "echo", third, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "262,144" in proc.stderr
    assert api.state() == before
    # the largest argument the kernel takes is taken, and the pod gets it whole
    fits = "z" * (MAX_ARG_BYTES - 1)
    proc = plane.run("submit", "fits", "-p", "team-a", "--", "sh", "-c",
                     'test "${#1}" = "$2"', "sh", fits, str(len(fits)))
    plane.until("the pod to succeed", lambda: plane.job("fits", "team-a")["job"]["status"]
                == "Succeeded")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e400", "3601"])
def test_the_cli_refuses_a_grace_period_it_cannot_use(plane: ControlPlane, api: Api,
                                                      value: str):
    before = api.state()
    proc = plane.run("submit", "bad", "-p", "team-a", f"--grace-period={value}", "--", "true",
                     check=False)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("error: --grace-period must be a number of seconds") and \
        proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert api.state() == before


@pytest.mark.parametrize("args", [
    ["project", "quota", "team-a", "--gpus", str(10**20)],
    ["project", "create", "team-x", "--gpus", str(10**20)],
    ["up", "--gpus", str(10**30)],
    ["logs", "bad", "--pod", "bad-0-0", "-p", "team-a", "--tail", "-1"],
])
def test_the_cli_refuses_numbers_out_of_range_in_one_line(plane: ControlPlane, api: Api,
                                                          args: list[str]):
    before = api.state()
    proc = plane.run(*args, check=False)
    assert proc.returncode in (2, 3), proc
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert api.state() == before


def test_the_web_forms_bound_a_quota(plane: ControlPlane, api: Api):
    """The Projects page's quota form: a number too big is one line on the page, not a 500."""
    # an admin with a password we know, through the API, to log in to the UI
    password = api.http.post("/users", json={"name": "ops", "admin": True}).json()["password"]
    with httpx.Client(base_url=api.url, timeout=60, follow_redirects=True) as web:
        assert web.post("/login", data={"username": "ops", "password": password}).is_success
        page = web.get("/projects").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf, page[:500]
        before = api.state()
        answer = web.post("/projects/team-a/quota", data={"csrf": csrf.group(1),
                                                          "gpus": str(10**20)})
        assert answer.status_code == 200 and "at most 1,000,000" in answer.text
        assert api.state() == before


def test_a_job_stored_before_the_command_limit_still_loads():
    """The limit is checked at submit; a spec read back from the store (or a Kubernetes
    annotation) passed the limits of its day, and must not make the job list unreadable."""
    old = {**JOB, "command": ["echo", "x" * (MAX_COMMAND_BYTES + 1)]}
    assert JobSpec.from_dict(old).command == old["command"]
    with pytest.raises(UsageError, match="131,072 bytes"):
        JobSpec(**old)


def test_a_quota_change_answers_both_quotas_as_they_now_are(api: Api):
    api.http.post("/projects", json={"name": "team-q", "gpus": 2, "cpus": 3})
    answer = api.http.put("/projects/team-q/quota", json={"cpus": 5})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"name": "team-q", "deserved": 2, "cpus": 5}
