"""A pod that dies without a word: the rerun of its index takes its trial over at once.

An engine never runs two pods of one index of a job at once, so a pod of the same job and
index with another name proves the holder dead. Outside a job nothing proves it: the lease
decides, as before. And a pod with nothing left to pick ends with exit 0.

Real processes throughout: workers (worker.py) with a pod's environment, SIGKILLed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import podsweep.hpo as hpo

from .conftest import Workers, events
from .test_api import run_py

JOB = "7c1d2e"
LONG_LEASE = "600"   # nothing in these tests may come back by its lease


def pod(name: str, index: int, job: str = JOB) -> Dict[str, str]:
    """A pod's environment, as the local engine sets it."""
    return {"PODSWEEP_JOB_NAME": "oom", "PODSWEEP_JOB_UID": job, "PODSWEEP_POD_NAME": name,
            "PODSWEEP_POD_INDEX": str(index), "JOB_COMPLETION_INDEX": str(index)}


def hold_then_kill(workers: Workers, env: Dict[str, str]) -> None:
    """A worker that picks a trial, reports epochs 0-2, and is SIGKILLed (the OOM killer)."""
    proc = workers.start("--size", "6", "--reports", "3", "--lease", LONG_LEASE, "--hold",
                         env=env)
    log = workers.logs[proc.pid]
    deadline = time.monotonic() + 60
    while "H" not in log.read_text().split():
        assert time.monotonic() < deadline and proc.poll() is None, "the worker never held"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def run_once(workers: Workers, env: Dict[str, str], reports: int = 5) -> str:
    proc = workers.start("--size", "6", "--reports", str(reports), "--lease", LONG_LEASE,
                         "--once", stdout=subprocess.PIPE, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out.decode()


def assigns(journal: Path) -> List[dict]:
    return [e for e in events(journal) if e["event"] == "assign"]


def test_the_rerun_of_a_killed_pods_index_takes_its_trial_over_at_once(workers):
    hold_then_kill(workers, pod("oom-1-0", 1))
    out = run_once(workers, pod("oom-1-1", 1))
    assert "Picked preempted HPO experiment #1 (attempt 2, resuming after epoch 2)" in out
    first, again = assigns(workers.journal)
    assert first["holder"] == {"job": JOB, "pod": "oom-1-0", "index": 1}
    assert "reclaimed" not in first
    assert (again["trial"], again["attempt"], again["reclaimed"]) == (1, 1, "holder-gone")
    assert again["holder"] == {"job": JOB, "pod": "oom-1-1", "index": 1}
    trial = hpo.results(workers.journal)[0]
    assert trial.status == "finished" and trial.attempts == 2
    # it resumed after the epoch the killed attempt reached: 3 and 4 only
    assert [(r.attempt, r.epoch) for r in trial.reports] == \
        [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4)]


def test_only_the_rerun_of_the_same_index_of_the_same_job_takes_it(workers):
    hold_then_kill(workers, pod("oom-1-0", 1))
    # another index, another job sharing the experiment, and the same pod again (a process
    # restarted inside the pod proves nothing): each gets a fresh trial
    for env in (pod("oom-2-0", 2), pod("oom-1-0", 1, job="9e8f7a"), pod("oom-1-0", 1)):
        out = run_once(workers, env, reports=1)
        assert "Picked HPO experiment #" in out and "preempted" not in out
    handed = [(a["trial"], a["attempt"]) for a in assigns(workers.journal)]
    assert handed == [(1, 0), (2, 0), (3, 0), (4, 0)]
    assert hpo.results(workers.journal)[0].status == "running"
    out = run_once(workers, pod("oom-1-1", 1))
    assert "Picked preempted HPO experiment #1 (attempt 2" in out


def test_outside_a_job_a_dead_holders_trial_waits_for_its_lease(workers):
    hold_then_kill(workers, {})
    # a plain process, and a pod: neither may take the trial of a plain process before
    # its lease has run out
    for env in ({}, pod("oom-1-1", 1)):
        out = run_once(workers, env, reports=1)
        assert "Picked HPO experiment #" in out and "preempted" not in out
    first, second, third = assigns(workers.journal)
    assert "holder" not in first and "holder" not in second and "holder" in third
    assert [a["trial"] for a in (first, second, third)] == [1, 2, 3]
    assert hpo.results(workers.journal)[0].status == "running"


def test_a_plain_process_takes_a_dead_holders_trial_once_its_lease_ran_out(tmp_path):
    # a pod's trial too: outside the job, only the lease tells that its holder is gone
    w = Workers(tmp_path)
    try:
        proc = w.start("--size", "6", "--reports", "2", "--lease", "0.5", "--hold",
                       env=pod("oom-1-0", 1))
        log = w.logs[proc.pid]
        deadline = time.monotonic() + 60
        while "H" not in log.read_text().split():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while hpo.results(w.journal)[0].status != "lost":
            assert time.monotonic() < deadline, "the lease never ran out"
            time.sleep(0.1)
        out, _ = w.start("--size", "6", "--reports", "3", "--once", "--lease", "0.5",
                         stdout=subprocess.PIPE).communicate(timeout=60)
        assert "Picked preempted HPO experiment #1 (attempt 2, resuming after epoch 1)" in \
            out.decode()
        assert assigns(w.journal)[-1]["reclaimed"] == "lease"
    finally:
        w.stop_all()


# The walk-through's script: it does not catch NoTrialsLeft.
UNCAUGHT = """
    import atexit, sys
    import podsweep.hpo as hpo
    atexit.register(lambda: print("atexit ran", flush=True))
    hpo.init({hpo_dir!r}, experiment="e")
    try:
        for _ in range(3):
            config = hpo.pick(grid=dict(lr=[0.1, 0.01]), strategy=hpo.Strategy.GridSearch)
            hpo.report(epoch=0, metrics={{"accuracy": config["lr"]}})
    finally:
        print("finally ran", flush=True)
"""


def test_nothing_left_to_pick_ends_a_pod_with_exit_0_and_one_line(tmp_path):
    done = run_py(UNCAUGHT.format(hpo_dir=str(tmp_path)), tmp_path, env=pod("oom-5-0", 5))
    assert done.stderr.splitlines() == [
        f"No HPO experiment left to pick in {tmp_path / 'e'}: every configuration is "
        f"handed out (0 running); exiting 0"]
    assert "finally ran\natexit ran" in done.stdout
    # both trials it held are finished: the second by the pick() that found nothing left
    assert [(t.id, t.status) for t in hpo.results(tmp_path / "e")] == \
        [(1, "finished"), (2, "finished")]
    before = (tmp_path / "e" / "hpo.jsonl").read_bytes()
    again = run_py(UNCAUGHT.format(hpo_dir=str(tmp_path)), tmp_path, env=pod("oom-5-1", 5))
    assert "Traceback" not in again.stderr and "exiting 0" in again.stderr
    assert (tmp_path / "e" / "hpo.jsonl").read_bytes() == before


def test_outside_a_pod_nothing_left_is_the_plain_error(tmp_path):
    run_py(UNCAUGHT.format(hpo_dir=str(tmp_path)), tmp_path, env=pod("oom-5-0", 5))
    plain = run_py(UNCAUGHT.format(hpo_dir=str(tmp_path)), tmp_path, check=False)
    assert plain.returncode == 1
    assert "podsweep.hpo._errors.NoTrialsLeft: all 2 configurations" in plain.stderr
    assert "exiting 0" not in plain.stderr


def test_a_pod_script_that_catches_nothing_left_decides_for_itself(tmp_path):
    code = f"""
        import sys
        import podsweep.hpo as hpo
        hpo.init({str(tmp_path)!r}, experiment="e")
        hpo.pick(grid=dict(lr=[0.1]))
        try:
            hpo.pick(grid=dict(lr=[0.1]))
        except hpo.NoTrialsLeft as exc:
            print("caught:", exc)
        try:
            hpo.pick(grid=dict(lr=[0.1]))
        except Exception as exc:       # a script's catch-all sees it as before
            print("caught as an Exception:", isinstance(exc, hpo.HPOError))
        sys.exit(3)
    """
    proc = run_py(code, tmp_path, env=pod("oom-0-0", 0), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "caught: all 1 configurations of experiment 'e' have been handed out" in proc.stdout
    assert "caught as an Exception: True" in proc.stdout
    assert "exiting 0" not in proc.stderr
