"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis) against a running server.

Every operation gets generated requests, valid and not, with the admin's token: none may
answer with a 5xx, and afterwards the server still answers and its state still reads.
No project exists while fuzzing, so no generated job can ever start a process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from ..control.conftest import ControlPlane  # noqa: E402


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("fuzz") / "home")
    cp.run("up", "--gpus", "2")
    yield cp
    status = cp.json("status")               # still answering, state still reads
    assert status["user"] == "admin"
    assert isinstance(cp.json("list", "-A"), list)
    cp.stop()


@pytest.fixture(scope="module")
def api_schema(plane: ControlPlane) -> Any:
    url = json.loads((plane.home / "server.json").read_text())["url"]
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


@pytest.fixture(scope="module")
def token(plane: ControlPlane) -> str:
    return str(json.loads((plane.home / "credentials.json").read_text())["token"])


def test_no_request_makes_the_server_fail(api_schema: Any, token: str) -> None:
    # schemathesis's own pytest plugin does not work with this pytest (9); its Hypothesis
    # strategies do, one operation at a time
    from hypothesis import given

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   checks=[not_a_server_error])

        fuzz()


def test_the_schema_covers_the_api(api_schema: Any) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {"/api/v1/jobs", "/api/v1/projects", "/api/v1/users",
            "/api/v1/jobs/{project}/{name}/logs"} <= paths
    assert not any(p.startswith(("/login", "/static")) for p in paths)   # pages are not API
