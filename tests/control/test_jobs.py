"""Jobs of pods on the local control plane: preemption of over-quota pods, and surviving the
control plane's own crash. What every engine shares (environment, GPUs, retries, delete,
volumes, logs) is in tests/conformance."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .conftest import ControlPlane


def done(plane: ControlPlane, name: str, project: str):
    job = plane.job(name, project)
    return job if job["job"]["status"] in ("Succeeded", "Failed") else None


def test_over_quota_pods_are_preempted_and_rerun(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "2")
    marker = tmp_path / "runs"
    marker.mkdir()
    gate = tmp_path / "gate"
    # each pod runs until the gate opens, so the three are still running when team-b comes
    # however slowly a loaded machine starts its job (a fixed sleep raced with it)
    script = (f'touch {marker}/$PODSWEEP_POD_NAME; trap "exit 143" TERM; '
              f'while [ ! -e {gate} ]; do sleep 0.05; done & wait')
    plane.run("submit", "hpo1", "-p", "team-a", "-g", "1", "--parallelism", "3",
              "--completions", "6", "--grace-period", "5", "--", "sh", "-c", script)
    plane.until("3 pods of hpo1 running",
                lambda: plane.job("hpo1", "team-a")["job"]["running"] == 3)
    plane.run("submit", "b", "-p", "team-b", "-g", "1", "--parallelism", "2",
              "--completions", "2", "--", "sleep", "1")
    plane.until("a preemption", lambda: any(
        e["kind"] == "Preempted" for e in plane.job("hpo1", "team-a")["events"]))
    gate.touch()
    job = plane.until("hpo1 done", lambda: done(plane, "hpo1", "team-a"))
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 6
    assert job["job"]["failed"] == 0
    preempted = [p for p in job["pods"] if p["status"] == "Preempted"]
    assert len(preempted) == 1
    index = preempted[0]["index"]
    assert f"hpo1-{index}-1" in [p["name"] for p in job["pods"] if p["status"] == "Succeeded"]
    assert any(e["kind"] == "Preempted" for e in job["events"])
    assert done(plane, "b", "team-b")["job"]["status"] == "Succeeded"


def test_the_control_plane_survives_its_own_crash(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "2")
    runs = tmp_path / "runs"
    runs.mkdir()
    gate = tmp_path / "gate"
    # the first two pods run until the gate opens, which is once the control plane is dead
    plane.run("submit", "c", "-p", "team-a", "-g", "1", "--parallelism", "2",
              "--completions", "6", "--", "sh", "-c",
              f"echo $PODSWEEP_POD_NAME >> {runs}/$PODSWEEP_POD_INDEX; "
              f"while [ ! -e {gate} ]; do sleep 0.05; done")
    plane.until("2 running", lambda: plane.job("c", "team-a")["job"]["running"] == 2)
    os.kill(plane.server_pid(), signal.SIGKILL)
    gate.touch()
    time.sleep(1.5)                      # the running pods end while nobody watches
    plane.run("up")
    job = plane.until("c done", lambda: done(plane, "c", "team-a"))
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 6
    # exactly one run per index: none lost, none run twice
    assert sorted(int(p.name) for p in runs.iterdir()) == list(range(6))
    assert all(len(p.read_text().splitlines()) == 1 for p in runs.iterdir())
