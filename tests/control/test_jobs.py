"""Jobs of pods on a real control plane: parallelism, GPUs, retries, preemption, delete,
volumes, logs, and surviving the control plane's own crash."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .conftest import ControlPlane


def done(plane: ControlPlane, name: str, project: str):
    job = plane.job(name, project)
    return job if job["job"]["status"] in ("Succeeded", "Failed") else None


def test_pods_run_with_their_environment_gpus_and_logs(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "4")
    out = tmp_path / "out"
    out.mkdir()
    script = (f'echo "pod $PODSWEEP_POD_NAME index $PODSWEEP_POD_INDEX/$JOB_COMPLETION_INDEX '
              f'gpus $CUDA_VISIBLE_DEVICES threads $OMP_NUM_THREADS job $PODSWEEP_JOB_NAME '
              f'project $PODSWEEP_PROJECT extra $EXTRA cwd $(pwd)"; '
              f'echo "$(date +%s.%N) start $CUDA_VISIBLE_DEVICES" >> {out}/$PODSWEEP_POD_INDEX; '
              f'sleep 0.4; echo "$(date +%s.%N) end $CUDA_VISIBLE_DEVICES" >> '
              f'{out}/$PODSWEEP_POD_INDEX')
    plane.run("submit", "j1", "-p", "team-a", "-g", "1", "--parallelism", "3",
              "--completions", "6", "--cpu", "2", "-e", "EXTRA=yes", "--working-dir",
              str(tmp_path), "--", "sh", "-c", script)
    job = plane.until("j1 done", lambda: done(plane, "j1", "team-a"))
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 6
    assert sorted(p["index"] for p in job["pods"]) == list(range(6))
    log = plane.run("logs", "j1", "-p", "team-a", "--pod", "j1-4-0").stdout
    assert (f"pod j1-4-0 index 4/4 gpus {job['pods'][4]['gpus'][0]} threads 2 job j1 "
            f"project team-a extra yes cwd {tmp_path}") in log
    # at most 3 at once, and never one GPU in two running pods at the same time
    spans = []
    for i in range(6):
        (t0, _, g0), (t1, _, _) = [line.split() for line in (out / str(i)).read_text()
                                   .splitlines()]
        spans.append((float(t0), float(t1), g0))
    for t, _, _ in spans:
        assert sum(1 for a, b, _ in spans if a <= t < b) <= 3
    for i, (a, b, g) in enumerate(spans):
        for j, (c, d, h) in enumerate(spans):
            if i != j and g == h:
                assert b <= c or d <= a, f"GPU {g} held twice"
    table = plane.run("get", "j1", "-p", "team-a").stdout
    assert "Parallelism:" in table and "POD" in table and "EVENTS" in table
    listing = plane.run("list", "-p", "team-a").stdout.splitlines()
    assert listing[1].split()[:2] == ["j1", "Succeeded"] and "6/6" in listing[1]


def test_a_failing_pod_is_retried_up_to_the_backoff_limit(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.run("submit", "bad", "-p", "team-a", "--backoff-limit", "2", "--", "sh", "-c",
              "echo trying; exit 3")
    job = plane.until("bad failed", lambda: done(plane, "bad", "team-a"))
    assert job["job"]["status"] == "Failed" and job["job"]["failed"] == 3
    assert [p["exit_code"] for p in job["pods"]] == [3, 3, 3]
    assert [p["name"] for p in job["pods"]] == ["bad-0-0", "bad-0-1", "bad-0-2"]
    assert "backoff limit 2" in job["job"]["message"]


def test_over_quota_pods_are_preempted_and_rerun(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "2")
    marker = tmp_path / "runs"
    marker.mkdir()
    script = (f'touch {marker}/$PODSWEEP_POD_NAME; trap "exit 143" TERM; '
              f'sleep 1.5 & wait')
    plane.run("submit", "hpo1", "-p", "team-a", "-g", "1", "--parallelism", "3",
              "--completions", "6", "--grace-period", "5", "--", "sh", "-c", script)
    plane.until("3 pods of hpo1 running",
                lambda: plane.job("hpo1", "team-a")["job"]["running"] == 3)
    plane.run("submit", "b", "-p", "team-b", "-g", "1", "--parallelism", "2",
              "--completions", "2", "--", "sleep", "1")
    job = plane.until("hpo1 done", lambda: done(plane, "hpo1", "team-a"))
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 6
    assert job["job"]["failed"] == 0
    preempted = [p for p in job["pods"] if p["status"] == "Preempted"]
    assert len(preempted) == 1
    index = preempted[0]["index"]
    assert f"hpo1-{index}-1" in [p["name"] for p in job["pods"] if p["status"] == "Succeeded"]
    assert any(e["kind"] == "Preempted" for e in job["events"])
    assert done(plane, "b", "team-b")["job"]["status"] == "Succeeded"


def test_delete_stops_every_pod_and_leaves_no_process(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("submit", "long", "-p", "team-a", "-g", "1", "--parallelism", "2",
              "--completions", "4", "--", "sh", "-c", "sleep 300 & sleep 300")
    plane.until("2 running", lambda: plane.job("long", "team-a")["job"]["running"] == 2)
    before = plane.pod_pids()
    assert before
    deleted = plane.run("delete", "long", "-p", "team-a")
    assert "Stopping 2 pod(s) of long (SIGTERM, then SIGKILL after 30 s)" in deleted.stderr
    assert "deleted" in deleted.stdout
    assert plane.json("list", "-A") == []
    time.sleep(0.2)
    assert [p for p in plane.pod_pids() if p != plane.server_pid()] == []


def test_volumes_are_mounted_where_the_pod_expects_them(plane: ControlPlane, tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("from the host\n")
    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.run("submit", "v", "-p", "team-a", "-v", f"{shared}:/nfs/hpo", "--", "sh", "-c",
              "cat /nfs/hpo/data.txt && echo written > /nfs/hpo/out.txt")
    job = plane.until("v done", lambda: done(plane, "v", "team-a"))
    assert job["job"]["status"] == "Succeeded", plane.run("logs", "v", "-p", "team-a").stdout
    assert "from the host" in plane.run("logs", "v", "-p", "team-a").stdout
    assert (shared / "out.txt").read_text() == "written\n"
    assert not Path("/nfs").exists()


def test_logs_follow_a_running_pod(plane: ControlPlane):
    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.run("submit", "f", "-p", "team-a", "--", "sh", "-c",
              "for i in 1 2 3; do echo line $i; sleep 0.3; done")
    plane.until("f running", lambda: plane.job("f", "team-a")["pods"])
    out = plane.run("logs", "f", "-p", "team-a", "-f").stdout
    assert out.splitlines() == ["line 1", "line 2", "line 3"]
    assert plane.run("logs", "f", "-p", "team-a", "--tail", "1").stdout == "line 3\n"


def test_the_control_plane_survives_its_own_crash(plane: ControlPlane, tmp_path: Path):
    plane.run("project", "create", "team-a", "--gpus", "2")
    runs = tmp_path / "runs"
    runs.mkdir()
    plane.run("submit", "c", "-p", "team-a", "-g", "1", "--parallelism", "2",
              "--completions", "6", "--", "sh", "-c",
              f"echo $PODSWEEP_POD_NAME >> {runs}/$PODSWEEP_POD_INDEX; sleep 0.8")
    plane.until("2 running", lambda: plane.job("c", "team-a")["job"]["running"] == 2)
    os.kill(plane.server_pid(), signal.SIGKILL)
    time.sleep(1.5)                      # the running pods end while nobody watches
    plane.run("up")
    job = plane.until("c done", lambda: done(plane, "c", "team-a"))
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 6
    # exactly one run per index: none lost, none run twice
    assert sorted(int(p.name) for p in runs.iterdir()) == list(range(6))
    assert all(len(p.read_text().splitlines()) == 1 for p in runs.iterdir())
