"""The local control plane's life: up and status, and a home that keeps its engine. What
every engine shares (down and up, projects, users, bad input) is in tests/conformance."""

from __future__ import annotations

import os
import stat

from .conftest import ControlPlane


def test_up_is_idempotent_and_status_tells_where_it_runs(plane: ControlPlane):
    again = plane.run("up")
    assert "already running" in again.stdout
    changed = plane.run("up", "--gpus", "2", check=False)
    assert changed.returncode == 2 and "already running with 4 GPU(s)" in changed.stderr
    status = plane.json("status")
    assert status["user"] == "admin" and status["admin"] is True
    assert [g["name"] for g in status["gpus"]] == ["virtual"] * 4
    assert status["url"].startswith("http://127.0.0.1:")
    creds = plane.home / "credentials.json"
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    assert f"web UI: {status['url']}/" in plane.run("status").stdout


def test_unfinished_jobs_keep_a_home_on_its_engine(plane: ControlPlane):
    """Local pods go on while the control plane is down; another engine would lose them."""
    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.run("submit", "long", "-p", "team-a", "--", "sleep", "300")
    plane.until("long running", lambda: plane.job("long", "team-a")["job"]["running"] == 1)
    plane.run("down")
    config = (plane.home / "config.json").read_text()
    moved = plane.run("up", "--cluster", "slurm", check=False)
    assert moved.returncode == 2, moved
    assert moved.stderr.strip().splitlines() == [
        "error: this home has 1 unfinished job(s) on the local cluster (team-a/long); "
        "podsweep up --cluster local and delete them (or let them end) before moving to slurm"]
    assert (plane.home / "config.json").read_text() == config
    plane.run("up")          # as before: the pod is adopted, and deleted
    assert plane.job("long", "team-a")["job"]["running"] == 1
    plane.run("delete", "long", "-p", "team-a")
