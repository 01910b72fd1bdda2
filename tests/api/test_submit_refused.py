"""A job whose environment or command could smuggle shell syntax or NUL into a pod is refused
at the API itself (not only by the CLI), and nothing of it is stored or run."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..control.conftest import ControlPlane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path / "home")
    cp.run("up", "--gpus", "2")
    cp.run("project", "create", "team-a", "--gpus", "2")
    yield cp
    cp.stop()


def post_job(plane: ControlPlane, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url = json.loads((plane.home / "server.json").read_text())["url"]
    token = json.loads((plane.home / "credentials.json").read_text())["token"]
    request = urllib.request.Request(
        f"{url}/api/v1/jobs", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_env_names_and_nul_are_refused_by_the_api(plane: ControlPlane, tmp_path: Path):
    marker = tmp_path / "pwned"
    cases = [
        ({"env": {f"X=1;touch {marker};Y": "v"}}, "invalid environment variable name"),
        ({"env": {"1X": "v"}}, "invalid environment variable name"),
        ({"env": {"": "v"}}, "invalid environment variable name"),
        ({"env": {"A\u0000B": "v"}}, "invalid environment variable name"),
        ({"env": {"OK": "a\u0000b"}}, "without NUL characters"),
        ({"command": ["echo", "a\u0000b"]}, "NUL character"),
    ]
    for extra, message in cases:
        body = {"name": "bad", "project": "team-a", "command": ["true"], **extra}
        status, answer = post_job(plane, body)
        assert status == 400, (extra, status, answer)
        assert message in answer["detail"] and "\n" not in answer["detail"], answer
    assert plane.json("list", "-A") == []
    # a good job under the same name is taken afterwards and runs with its env
    status, answer = post_job(plane, {"name": "bad", "project": "team-a",
                                      "command": ["sh", "-c", "test \"$MY_VAR\" = 'a b;c'"],
                                      "env": {"MY_VAR": "a b;c"}})
    assert status == 201, answer
    done = plane.until("the good job", lambda: (lambda j: j if j["job"]["status"] in
                       ("Succeeded", "Failed") else None)(plane.job("bad", "team-a")))
    assert done["job"]["status"] == "Succeeded", done
    assert not marker.exists()
