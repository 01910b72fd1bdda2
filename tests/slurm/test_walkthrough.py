"""The walk-through on Slurm, end to end, with the real training script.

4 GPUs; team-a and team-b deserve 2 each. hpo1 (team-a): 12 tasks of examples/hpo_digits.py,
3 at a time, one GPU each, the shared directory at /nfs/hpo. Two run within team-a's quota
and podsweep lends the third an idle GPU (the borrow QOS). Then team-b claims its 2 GPUs:
Slurm itself preempts the borrowed task and requeues it; it runs again as the next attempt,
the preempted trial is handed out again and resumes from its checkpoint, and all 12
configurations complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

import podsweep.hpo as hpo

from ..control.test_walkthrough import paced
from .conftest import SlurmPlane, run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hpo_digits.py"


def test_the_walkthrough_on_slurm(plane: SlurmPlane, tmp_path: Path):
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "2")
    plane.run("project", "set", "team-a")
    # 1 s epochs for the first three tasks (the local test's are 0.4 s): team-b's job must
    # reach Slurm while the lent task is still mid-trial, through a few more CLI round trips
    # than on local; the rest of the sweep goes fast
    plane.run("submit", "hpo1", "-g", "1", "--parallelism", "3", "--completions", "12",
              "-v", f"{nfs}:/nfs/hpo", "--", "sh", "-c", paced(slow=1.0, fast=0.2),
              sys.executable, str(EXAMPLE), "--epochs", "10")

    # 3 tasks run: one of them beyond team-a's quota, on an idle GPU lent to it
    job = plane.until("3 hpo1 pods running", lambda: (lambda j: j if j["job"]["running"] == 3
                                                      else None)(plane.job("hpo1", "team-a")))
    row = plane.run("list").stdout.splitlines()[1].split()
    assert row[:2] == ["hpo1", "Running"] and "3 (3)" in " ".join(row)
    team_a = {p["name"]: p for p in plane.json("project", "list")}["team-a"]
    assert team_a["allocated"] == 3 and team_a["deserved"] == 2
    array = plane.array("hpo1", "team-a")
    running = [t for t in plane.squeue(array) if t["job_state"] == "RUNNING"]
    assert sorted(t["qos"] for t in running) == sorted(
        [f"ps-{plane.prefix}team-a"] * 2 + [f"ps_{plane.prefix}borrow"])
    # the lent task still counts towards the array's %3: the rest wait on it, not on quota
    plane.until("the rest held by the array's throttle", lambda: {
        t["state_reason"] for t in plane.squeue(array) if t["job_state"] == "PENDING"} == {
        "JobArrayTaskLimit"})
    assert len([t for t in plane.squeue(array) if t["job_state"] == "RUNNING"]) == 3
    borrowed = next(e["message"].split()[1] for e in job["events"]
                    if e["kind"] == "Started" and "borrowed" in e["message"])

    # team-b needs its 2 GPUs: Slurm preempts the borrowed task
    # read from the log file itself, not through a CLI call per probe: on a loaded machine each
    # call takes a second or more of the lent task's few seconds left mid-trial (CI once saw
    # the task finish first, and then nothing was left to preempt)
    log_file = plane.home / "slurm" / job["job"]["uid"] / f"{borrowed}.log"
    plane.until("the borrowed pod past its first epoch", lambda: log_file.exists()
                and "epoch 0:" in log_file.read_text())
    plane.run("submit", "train", "-p", "team-b", "-g", "2", "--", "sleep", "12")
    job = plane.until("a preemption", lambda: (lambda j: j if any(
        e["kind"] == "Preempted" for e in j["events"]) else None)(plane.job("hpo1", "team-a")))
    preempted = next(e["message"].split()[1].rstrip(":") for e in job["events"]
                     if e["kind"] == "Preempted")
    assert preempted == borrowed
    # both jobs in one CLI call, a snapshot (two calls, each a second or more on a loaded
    # machine, once never saw both at once); team-b's pod runs 12 s for the probe to see it
    plane.until("hpo1 on 2 pods beside train", lambda: {
        j["name"]: j["running"] for j in plane.json("list", "-A")} == {"hpo1": 2, "train": 1})
    get = plane.run("get", "hpo1").stdout
    assert "Preempted" in get and preempted in get

    job = plane.until("hpo1 done", lambda: (lambda j: j if j["job"]["status"] in (
        "Succeeded", "Failed") else None)(plane.job("hpo1", "team-a")), timeout=240,
        every=1.0)
    assert job["job"]["status"] == "Succeeded" and job["job"]["succeeded"] == 12
    assert job["job"]["failed"] == 0

    # Slurm's own record: the borrowed task was preempted in the borrow QOS and ran again
    index = preempted.split("-")[1]
    records = run("sacct", "-D", "-X", "-P", "-n", "-j", f"{array}_{index}",
                  "--format=State,QOS").split()
    assert f"PREEMPTED|ps_{plane.prefix}borrow" in records, records
    assert records[-1].startswith("COMPLETED"), records

    # the preempted pod's index ran again, and some later pod (whichever picked first)
    # was handed the preempted trial and resumed it from its checkpoint
    names = [p["name"] for p in job["pods"]]
    assert f"hpo1-{index}-1" in names
    logs = {n: p.stdout for n, p in zip(names, plane.run_all(
        *(["logs", "hpo1", "--pod", n] for n in names)))}
    resumed = [n for n, text in logs.items() if "Picked preempted HPO experiment #" in text]
    assert len(resumed) == 1, {n: t[:200] for n, t in logs.items()}
    assert "Resuming from checkpoint" in logs[resumed[0]]
    assert "Using HPO directory /nfs/hpo" in logs[preempted]
    assert "Picked HPO experiment #" in logs[preempted]

    # one file holds the 12 configurations with their reports
    uid = job["job"]["uid"]
    results = hpo.results(nfs / f"hpo1-{uid}")
    assert len(results) == 12 and all(t.status == "finished" for t in results)
    assert len({tuple(sorted(t.config.items())) for t in results}) == 12
    assert all(t.epoch == 9 for t in results)
    assert sorted(t.attempts for t in results)[-1] == 2

    plane.run("delete", "hpo1")
    assert [j["name"] for j in plane.json("list", "-A")] == ["train"]
