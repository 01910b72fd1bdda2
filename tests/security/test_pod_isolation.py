"""Issue 10, items 5 and 6: a pod cannot take over the admin, and nothing outlives a pod.

A real control plane (``podsweep up`` in a fresh home, tests/control/conftest.py), pods that
try what a hostile job would, and the host's /proc read after. The control plane is started
with ``PODSWEEP_TOKEN`` and a secret of the admin's in its environment: no pod may see them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import ControlPlane

ADMIN_SECRET = "PODSWEEP_TEST_ADMIN_SECRET"
ALLOWED = {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL",
           "TERM"}
POD_VARIABLES = {"PODSWEEP_JOB_NAME", "PODSWEEP_JOB_UID", "PODSWEEP_PROJECT",
                 "PODSWEEP_POD_NAME", "PODSWEEP_POD_INDEX", "PODSWEEP_POD_ATTEMPT",
                 "JOB_COMPLETION_INDEX", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                 "OMP_NUM_THREADS"}


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path / "home")
    cp.env[ADMIN_SECRET] = "s3cret"
    cp.run("up", "--gpus", "2", token="the-admins-token")
    cp.env.pop(ADMIN_SECRET)
    cp.run("project", "create", "team-a", "--gpus", "2")
    yield cp
    cp.stop()


def finished(plane: ControlPlane, name: str) -> Any:
    job = plane.job(name, "team-a")
    return job if job["job"]["status"] in ("Succeeded", "Failed") else None


def processes_of(job_uid: str) -> list[tuple[int, list[bytes]]]:
    """Every live process on the host whose environment names the job: its pods' processes."""
    found = []
    marker = f"PODSWEEP_JOB_UID={job_uid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append((int(entry.name),
                              (entry / "cmdline").read_bytes().split(b"\0")[:-1]))
        except (OSError, IndexError):
            continue
    return found


PROBE = r"""
import json, os, sys
home, out = sys.argv[1], sys.argv[2]
seen = {"env": dict(os.environ), "server_visible": os.path.exists("/proc/" + sys.argv[3])}
for name in ("", "podsweep.db", "credentials.json", "server.json", "pods"):
    path = os.path.join(home, name)
    try:
        seen[name or "home"] = sorted(os.listdir(path)) if os.path.isdir(path) else \
            open(path, "rb").read().decode(errors="replace")
    except OSError as exc:
        seen[name or "home"] = "refused: " + type(exc).__name__
try:
    os.mkdir(os.path.join(home, "planted"))
    seen["write"] = "written"
except OSError as exc:
    seen["write"] = "refused: " + type(exc).__name__
json.dump(seen, open(out, "w"))
"""


def test_a_pod_cannot_read_the_home_and_sees_a_clean_environment(plane: ControlPlane,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    plane.run("submit", "probe", "-p", "team-a", "-e", "MINE=yes", "--", sys.executable,
              "-c", PROBE, str(plane.home), str(out), str(plane.server_pid()))
    job = plane.until("probe done", lambda: finished(plane, "probe"))
    assert job["job"]["status"] == "Succeeded", job
    seen = json.loads(out.read_text())
    assert seen["home"] == []                       # an empty tmpfs over the home
    for name in ("podsweep.db", "credentials.json", "server.json", "pods"):
        assert seen[name] == "refused: FileNotFoundError", name
    assert seen["write"].startswith("refused: ")
    assert not seen["server_visible"]               # nor the control plane's /proc/PID/root
    assert (plane.home / "credentials.json").exists() and \
        not (plane.home / "planted").exists()
    env = seen["env"]
    assert env["MINE"] == "yes" and env["PODSWEEP_POD_NAME"] == "probe-0-0"
    extra = {k for k in env if k not in ALLOWED | POD_VARIABLES | {"MINE"}
             and not k.startswith("LC_")}
    assert extra == set()
    for private in ("PODSWEEP_HOME", "PODSWEEP_TOKEN", "PODSWEEP_URL", ADMIN_SECRET):
        assert private not in env
    assert plane.json("status")["isolation"] == "namespaces"


def test_nothing_outlives_a_pod_whose_supervisor_is_killed(plane: ControlPlane) -> None:
    plane.run("submit", "escape", "-p", "team-a", "--", "sh", "-c",
              "setsid sleep 47 & sleep 4")
    uid = plane.job("escape", "team-a")["job"]["uid"]

    def escaped() -> list[int]:
        return [pid for pid, argv in processes_of(uid) if argv == [b"sleep", b"47"]]

    first = plane.until("sleep 47 running", escaped)
    state = json.loads(next(plane.home.glob("pods/*/escape-0-0/state.json")).read_text())
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    plane.until("the index rerun", lambda: any(
        p["name"] == "escape-0-1" for p in plane.job("escape", "team-a")["pods"]))
    # the rerun starts a sleep 47 of its own; the first one's is gone
    plane.until("the first sleep 47 gone", lambda: not set(first) & set(escaped()), 10)
    job = plane.until("escape done", lambda: finished(plane, "escape"))
    assert job["job"]["status"] == "Succeeded"
    assert [p["status"] for p in job["pods"]] == ["Failed", "Succeeded"]
    plane.until("nothing of the job left", lambda: processes_of(uid) == [], 10)


def test_delete_leaves_no_process_of_the_pod(plane: ControlPlane) -> None:
    plane.run("submit", "long", "-p", "team-a", "--parallelism", "2", "--completions", "2",
              "--grace-period", "2", "--", "sh", "-c",
              "setsid sh -c 'trap \"\" TERM; sleep 300' & sleep 300")
    uid = plane.job("long", "team-a")["job"]["uid"]
    plane.until("both pods' daemons running",
                lambda: sum(argv[:2] == [b"sleep", b"300"] for _, argv in processes_of(uid))
                == 4)
    plane.run("delete", "long", "-p", "team-a")
    assert processes_of(uid) == []


def test_a_volume_inside_the_home_is_refused(plane: ControlPlane) -> None:
    for src in (plane.home, plane.home / "pods"):
        result = plane.run("submit", "peek", "-p", "team-a", "-v", f"{src}:/peek", "--",
                           "true", check=False)
        assert result.returncode != 0
        assert result.stderr.strip().count("\n") == 0
        assert "pods may not see" in result.stderr
    assert plane.json("list", "-A") == []


def test_up_refuses_where_pods_cannot_be_isolated(tmp_path: Path) -> None:
    # no compiler and an empty cache: no sandbox to isolate pods with
    cp = ControlPlane(tmp_path / "home")
    cp.env.update(PODSWEEP_CACHE=str(tmp_path / "cache"), CC="/bin/false")
    try:
        refused = cp.run("up", "--gpus", "1", check=False)
        assert refused.returncode != 0
        assert refused.stderr.strip().count("\n") == 0
        assert "pods cannot be isolated here" in refused.stderr
        assert "--no-isolation" in refused.stderr
        cp.run("up", "--gpus", "1", "--no-isolation")
        assert cp.json("status")["isolation"] == "environment only"
    finally:
        cp.stop()


@pytest.mark.parametrize("cluster", ["slurm", "kubernetes"])
def test_no_isolation_is_for_the_local_cluster_only(tmp_path: Path, cluster: str) -> None:
    plane = ControlPlane(tmp_path / "home")
    refused = plane.run("up", "--cluster", cluster, "--no-isolation", check=False)
    assert refused.returncode == 2
    assert refused.stderr == (f"error: --no-isolation is for the local cluster; the {cluster} "
                              f"cluster isolates pods its own way\n")
    assert not (tmp_path / "home" / "config.json").exists()     # nothing stored
