"""Issue 10, item 2: pods without GPUs are bounded by the machine's CPUs.

A real control plane with ``podsweep up --cpus 4``: a project with GPU quota 0 and CPU
quota 2 submits 300 ``sleep`` pods and gets the machine's 4 CPUs at most (2 of its quota, 2
borrowed), counted as live processes; another project's claim on its own CPU quota
preempts the borrowers and never the quota; a pod of ``--cpu 2`` holds two CPUs and runs
with 2 threads; bad quotas and oversized pods are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import ControlPlane


@pytest.fixture
def plane(tmp_path: Path):
    cp = ControlPlane(tmp_path / "home")
    cp.run("up", "--gpus", "0", "--cpus", "4")
    yield cp
    cp.stop()


def live_pods(mark: str) -> int:
    """Pod commands (``sleep``) running now whose environment carries ``mark``."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "sleep":
                continue
            if f"MARK={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                count += 1
        except OSError:
            continue
    return count


def project(plane: ControlPlane, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = plane.json("project", "list")
    return next(p for p in rows if p["name"] == name)


def test_300_pods_of_a_quota_0_project_share_the_machines_4_cpus(plane: ControlPlane,
                                                                 tmp_path: Path):
    plane.run("project", "create", "team-b", "--gpus", "0", "--cpus", "2")
    mark = f"b-{tmp_path.name}"
    plane.run("submit", "many", "-p", "team-b", "--parallelism", "300", "--completions", "300",
              "-e", f"MARK={mark}", "--", "sleep", "600")
    job = plane.until("4 pods running", lambda: (j := plane.job("many", "team-b"))
                      ["job"]["running"] == 4 and j)
    assert job["job"]["pending"] == 296
    plane.until("4 live pods", lambda: live_pods(mark) == 4)
    # the scheduler has settled (every pod ended or started is accounted): still 4
    for _ in range(10):
        assert live_pods(mark) <= 4
        assert plane.job("many", "team-b")["job"]["running"] <= 4
    row = project(plane, "team-b")
    assert (row["cpus"], row["allocated_cpus"], row["allocated"]) == (2, 4, 0)
    table = plane.run("project", "list").stdout
    assert "2/4" in table

    # team-c claims its own 2 CPUs: team-b's two borrowers are preempted, its quota is not
    plane.run("project", "create", "team-c", "--cpus", "2")
    other = f"c-{tmp_path.name}"
    plane.run("submit", "claim", "-p", "team-c", "--parallelism", "5", "--completions", "5",
              "-e", f"MARK={other}", "--", "sleep", "600")
    plane.until("team-c holds its quota",
                lambda: plane.job("claim", "team-c")["job"]["running"] == 2)
    plane.until("2 live pods each", lambda: (live_pods(mark), live_pods(other)) == (2, 2))
    many = plane.job("many", "team-b")
    preempted = [p for p in many["pods"] if p["status"] == "Preempted"]
    assert len(preempted) == 2
    assert many["job"]["running"] == 2 and many["job"]["failed"] == 0
    assert (project(plane, "team-b")["allocated_cpus"], project(plane, "team-c")
            ["allocated_cpus"]) == (2, 2)

    # team-c goes away: team-b borrows the idle CPUs again, up to the machine
    plane.run("delete", "claim", "-p", "team-c")
    plane.until("team-b borrows again", lambda: live_pods(mark) == 4)
    assert live_pods(other) == 0
    plane.run("delete", "many", "-p", "team-b")
    assert live_pods(mark) == 0


def test_a_pod_of_2_cpus_counts_twice_and_runs_2_threads(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a", "--cpus", "4")
    mark = f"a-{tmp_path.name}"
    out = tmp_path / "threads"
    out.mkdir()
    plane.run("submit", "wide", "-p", "team-a", "--cpu", "2", "--parallelism", "10",
              "--completions", "10", "-e", f"MARK={mark}", "--", "sh", "-c",
              f'echo "$OMP_NUM_THREADS" > {out}/$PODSWEEP_POD_INDEX; exec sleep 600')
    plane.until("2 pods of 2 CPUs", lambda: live_pods(mark) == 2)
    job = plane.job("wide", "team-a")["job"]
    assert (job["running"], job["pending"]) == (2, 8)
    assert project(plane, "team-a")["allocated_cpus"] == 4
    plane.until("their thread counts", lambda: len(list(out.iterdir())) == 2)
    assert {f.read_text().strip() for f in out.iterdir()} == {"2"}
    plane.run("delete", "wide", "-p", "team-a")


def test_bad_cpu_quotas_and_pods_are_refused_in_one_line(plane: ControlPlane):
    plane.run("project", "create", "team-a")
    assert (project(plane, "team-a")["cpus"], project(plane, "team-a")["deserved"]) == (0, 0)
    cases = [
        (("project", "create", "team-x", "--cpus", "-1"), "--cpus"),
        (("project", "quota", "team-a", "--cpus", "-2"), "--cpus"),
        (("project", "quota", "team-a"), "give a new quota"),
        (("submit", "big", "-p", "team-a", "--cpu", "5", "--", "true"), "4 CPU(s)"),
        (("up", "--cpus", "8"), "already running with 4 CPU(s)"),
        (("up", "--cpus", "0"), "--cpus must be from 1 to 4096, got 0"),
        (("up", "--cpus", str(10**6)), "--cpus must be from 1 to 4096"),
    ]
    for args, said in cases:
        refused = plane.run(*args, check=False)
        assert refused.returncode != 0, args
        assert said in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, (
            args, refused.stderr)
    # a quota changes alone, and the other one stays
    plane.run("project", "quota", "team-a", "--cpus", "3")
    plane.run("project", "quota", "team-a", "--gpus", "0")
    assert project(plane, "team-a")["cpus"] == 3
    assert "team-x" not in {p["name"] for p in plane.json("project", "list")}
    config = json.loads((plane.home / "config.json").read_text())
    assert config["cpus"] == 4      # remembered for the next podsweep up
