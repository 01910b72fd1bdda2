"""The control plane's life and the CLI's contract: up/down/status, auth, bad input."""

from __future__ import annotations

import json
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


def test_down_then_up_keeps_state(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "2")
    pid = plane.server_pid()
    assert "stopped" in plane.run("down").stdout
    assert plane.run("status", check=False).returncode == 1
    listing = plane.run("list", check=False)
    assert listing.returncode == 5 and "not running" in listing.stderr
    plane.run("up")
    assert plane.server_pid() != pid
    assert [p["name"] for p in plane.json("project", "list")] == ["team-a"]


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


def test_projects_quotas_and_the_default_project(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "2")
    plane.run("project", "quota", "team-b", "--gpus", "3")
    rows = {p["name"]: p for p in plane.json("project", "list")}
    assert rows["team-a"]["deserved"] == 2 and rows["team-b"]["deserved"] == 3
    table = plane.run("project", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["PROJECT", "DESERVED", "GPUS", "ALLOCATED"]
    assert "team-a has been set" in plane.run("project", "set", "team-a").stdout
    assert json.loads((plane.home / "cli.json").read_text())["project"] == "team-a"


def test_users_see_and_touch_only_their_projects(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.run("project", "create", "team-b", "--gpus", "1")
    out = plane.run("user", "create", "alice", "-p", "team-a").stdout
    token = out.split("CLI token: ")[1].split()[0]
    plane.run("submit", "b1", "-p", "team-b", "--", "true")
    plane.run("submit", "a1", "-p", "team-a", "--", "true", token=token)
    assert [j["name"] for j in plane.json("list", "-A", token=token)] == ["a1"]
    assert [p["name"] for p in plane.json("project", "list", token=token)] == ["team-a"]
    for args in (["get", "b1", "-p", "team-b"], ["delete", "b1", "-p", "team-b"],
                 ["submit", "x", "-p", "team-b", "--", "true"],
                 ["project", "create", "team-c"], ["user", "create", "bob"]):
        refused = plane.run(*args, token=token, check=False)
        assert refused.returncode == 4, (args, refused.stderr)
        assert refused.stderr.startswith("error: ") and len(refused.stderr.splitlines()) == 1
    wrong = plane.run("list", "-A", token="not-a-token", check=False)
    assert wrong.returncode == 4 and "invalid token" in wrong.stderr


def test_bad_input_is_one_line_a_non_zero_exit_and_changes_nothing(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("submit", "hpo1", "-p", "team-a", "--", "true")
    cases = [
        (["project", "create", "Team_A"], "invalid project name"),
        (["project", "create", "team-x", "--gpus", "-1"], "--gpus"),
        (["project", "create", "team-a"], "already exists"),
        (["project", "quota", "nope", "--gpus", "1"], "not found"),
        (["submit", "Bad_Name", "-p", "team-a", "--", "true"], "invalid job name"),
        (["submit", "hpo1", "-p", "team-a", "--", "true"], "already exists"),
        (["submit", "j", "-p", "nope", "--", "true"], "project 'nope' not found"),
        (["submit", "j", "-p", "team-a", "-g", "-1", "--", "true"], "--gpu"),
        (["submit", "j", "-p", "team-a", "-g", "5", "--", "true"], "has 4 GPU(s)"),
        (["submit", "j", "-p", "team-a", "--parallelism", "0", "--", "true"], "parallelism"),
        (["submit", "j", "-p", "team-a", "--completions", "0", "--", "true"], "completions"),
        (["submit", "j", "-p", "team-a", "-v", "relative:/x", "--", "true"], "absolute"),
        (["submit", "j", "-p", "team-a", "-v", "/tmp", "--", "true"], "SRC:DST"),
        (["submit", "j", "-p", "team-a", "-v", "/no/such/dir:/x", "--", "true"], "does not exist"),
        (["submit", "j", "-p", "team-a"], "missing command"),
        (["submit", "j", "-p", "team-a", "-i", "img:1", "--", "true"], "container runtime"),
        (["submit", "j", "-p", "team-a", "-e", "NOEQUALS", "--", "true"], "KEY=VALUE"),
        (["logs", "hpo1", "-p", "team-a", "--pod", "../../etc/passwd"], "not a pod of job"),
        (["logs", "hpo1", "-p", "team-a", "--pod", "other-0-0"], "not a pod of job"),
        (["get", "nope", "-p", "team-a"], "not found"),
    ]
    before = plane.json("list", "-A")
    for args, message in cases:
        out = plane.run(*args, check=False)
        assert out.returncode != 0, args
        assert message in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
    after = plane.json("list", "-A")
    assert [j["name"] for j in after] == [j["name"] for j in before] == ["hpo1"]
    assert [p["name"] for p in plane.json("project", "list")] == ["team-a"]
