"""A sweep survives its pods dying, on the local control plane (issue 9).

A 6-point grid, 2 pods at a time, 6 completions, backoff limit 3, one trial of 6 epochs per
pod with a checkpoint per epoch (tests/control/trainer.py). The training process of pod
``oom-1-0`` is SIGKILLed mid-trial, as the OOM killer would, or its supervisor is: the
index runs again, its rerun takes the dead pod's trial over at once and resumes it from its
checkpoint, and the job succeeds with every configuration finished. A pod that finds
nothing left to pick exits 0: it is not a failure.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import podsweep.hpo as hpo

from .conftest import ControlPlane

TRAINER = Path(__file__).with_name("trainer.py")


# The helpers below serve tests/slurm/test_pod_death.py too: only where a pod's log lies
# differs (LOCAL_LOG, relative to the control plane's home).
LOCAL_LOG = "pods/*/{pod}/pod.log"


def sweep(plane: ControlPlane, tmp_path: Path, *, completions: int = 6, parallelism: int = 2,
          grid: int = 6, epochs: int = 6, epoch_seconds: float = 0.3) -> tuple[Path, Path]:
    """Submit job oom of the trainer; its HPO directory and marks directory."""
    hpo_dir, marks = tmp_path / "nfs", tmp_path / "marks"
    hpo_dir.mkdir()
    marks.mkdir()
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("submit", "oom", "-p", "team-a", "--parallelism", str(parallelism),
              "--completions", str(completions), "--backoff-limit", "3", "--",
              sys.executable, str(TRAINER), str(hpo_dir), str(marks), "--epochs", str(epochs),
              "--epoch-seconds", str(epoch_seconds), "--grid", str(grid))
    return hpo_dir, marks


def done(plane: ControlPlane) -> dict[str, Any] | None:
    job: dict[str, Any] = plane.job("oom", "team-a")
    return job if job["job"]["status"] in ("Succeeded", "Failed") else None


def logs(plane: ControlPlane, job: dict[str, Any]) -> dict[str, str]:
    names = [p["name"] for p in job["pods"]]
    return {n: p.stdout for n, p in zip(names, plane.run_all(
        *(["logs", "oom", "-p", "team-a", "--pod", n] for n in names)))}


def mid_trial(plane: ControlPlane, log_glob: str = LOCAL_LOG) -> Path:
    """The log of pod oom-1-0, once it has checkpointed and reported epoch 1."""
    def reached() -> Path | None:
        for log in plane.home.glob(log_glob.format(pod="oom-1-0")):
            if "epoch 1 done" in log.read_text():
                return log
        return None
    found: Path = plane.until("oom-1-0 past epoch 1", reached, timeout=120)
    return found


def host_pid(pod: str, pid: int) -> int:
    """The host's pid of the process that pod ``pod`` knows as ``pid``.

    A local pod has a pid namespace of its own: the pid it reports is its own view.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        nspids = next((line.split()[1:] for line in status.splitlines()
                       if line.startswith("NSpid:")), [])
        if nspids and nspids[-1] == str(pid) and f"PODSWEEP_POD_NAME={pod}".encode() in environ:
            return int(entry.name)
    return pid      # the same pid namespace as ours


def check_survived(plane: ControlPlane, hpo_dir: Path, reason: str | None) -> None:
    """The job succeeded with all 6 configurations finished; oom-1-1 took over oom-1-0's
    trial (which ended for ``reason``, if given) and resumed it from its checkpoint."""
    job = plane.until("oom done", lambda: done(plane), timeout=240, every=0.5)
    pods = {p["name"]: p for p in job["pods"]}
    text = logs(plane, job)
    assert job["job"]["status"] == "Succeeded", (job["job"], text)
    assert job["job"]["succeeded"] == 6 and job["job"]["failed"] == 1
    assert pods["oom-1-0"]["status"] == "Failed"
    assert reason is None or reason in pods["oom-1-0"]["reason"], pods["oom-1-0"]
    assert pods["oom-1-1"]["status"] == "Succeeded"
    assert not [n for n, t in text.items() if "still alive" in t], text
    assert not [n for n, t in text.items() if "No HPO experiment left" in t], text

    results = hpo.results(hpo_dir / f"oom-{job['job']['uid']}")
    assert len(results) == 6 and all(t.status == "finished" for t in results)
    assert len({tuple(sorted(t.config.items())) for t in results}) == 6
    assert all(t.epoch == 5 for t in results)
    killed = [t for t in results if t.attempts == 2]
    assert [t.attempts for t in results].count(1) == 5 and len(killed) == 1
    # the rerun of index 1 took the trial over at once, and resumed after the last epoch
    # the killed attempt checkpointed
    journal = [json.loads(line) for line in
               (hpo_dir / f"oom-{job['job']['uid']}" / "hpo.jsonl").read_text().splitlines()]
    trial = killed[0]
    assign = next(e for e in journal if e["event"] == "assign" and e["trial"] == trial.id
                  and e["attempt"] == 1)
    assert assign["reclaimed"] == "holder-gone"
    assert assign["holder"] == {"job": job["job"]["uid"], "pod": "oom-1-1", "index": 1}
    reached = max(r.epoch for r in trial.reports if r.attempt == 0)
    assert [r.epoch for r in trial.reports if r.attempt == 1] == list(range(reached + 1, 6))
    assert f"Picked preempted HPO experiment #{trial.id} (attempt 2, resuming after epoch " \
           f"{reached})" in text["oom-1-1"]
    assert f"Resuming from checkpoint after epoch {reached}" in text["oom-1-1"]
    # nothing of the killed attempt came after the takeover (the journal is in lock order)
    after = journal[journal.index(assign):]
    assert not [e for e in after if e.get("trial") == trial.id and e.get("attempt") == 0]


def test_a_pod_killed_by_the_oom_killer_loses_no_configuration(plane: ControlPlane,
                                                                tmp_path: Path):
    hpo_dir, marks = sweep(plane, tmp_path)
    mid_trial(plane)
    pid = host_pid("oom-1-0", int((marks / "oom-1-0.pid").read_text().split()[0]))
    os.kill(pid, signal.SIGKILL)             # the training process itself, as the OOM killer
    check_survived(plane, hpo_dir, "exit code -9")


def test_a_pod_whose_supervisor_is_killed_loses_no_configuration(plane: ControlPlane,
                                                                  tmp_path: Path):
    hpo_dir, _ = sweep(plane, tmp_path)
    state = json.loads((mid_trial(plane).parent / "state.json").read_text())
    os.kill(int(state["supervisor_pid"]), signal.SIGKILL)
    check_survived(plane, hpo_dir, "supervisor lost")


def test_a_pod_with_nothing_left_to_pick_succeeds(plane: ControlPlane, tmp_path: Path):
    # 3 pods for 2 configurations: whichever picks last finds them handed out
    hpo_dir, _ = sweep(plane, tmp_path, completions=3, parallelism=3, grid=2, epochs=3)
    job = plane.until("oom done", lambda: done(plane), timeout=120)
    text = logs(plane, job)
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 3, text
    assert job["job"]["failed"] == 0
    idle = [n for n, t in text.items() if "No HPO experiment left to pick" in t]
    assert len(idle) == 1, text
    assert f"No HPO experiment left to pick in {hpo_dir / ('oom-' + job['job']['uid'])}: " \
           f"every configuration is handed out" in text[idle[0]]
    assert "Traceback" not in text[idle[0]]
    assert {p["name"]: p["exit_code"] for p in job["pods"]}[idle[0]] == 0
    results = hpo.results(hpo_dir / f"oom-{job['job']['uid']}")
    assert [t.status for t in results] == ["finished", "finished"]
