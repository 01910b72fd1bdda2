"""CPU quotas on the real Slurm: a project's QOS holds ``cpu=N`` beside ``gres/gpu=G``, tasks
over it wait (``QOSGrpCpuLimit``) and are lent idle CPUs through the borrow QOS, and a
project within its CPU quota takes them back by Slurm's own preemption. A project with no
CPU quota has no CPU limit on its QOS, and its GPU-less jobs run in the borrow QOS only."""

from __future__ import annotations

import time
from typing import Any

from .conftest import SlurmPlane, gpu_tres, run


def grptres(qos: str) -> str:
    return run("sacctmgr", "-n", "-P", "show", "qos", "where", f"name={qos}",
               "format=grptres").strip()


def array(plane: SlurmPlane, name: str, project: str) -> str | None:
    """The job's Slurm array id, once sbatch has answered."""
    try:
        return plane.array(name, project)
    except StopIteration:
        return None


def running(plane: SlurmPlane, array: str) -> list[dict[str, Any]]:
    return [t for t in plane.squeue(array) if t["job_state"] == "RUNNING"]


def test_the_cpu_quota_is_on_the_qos_and_quota_0_only_borrows(plane: SlurmPlane):
    p = plane.prefix
    plane.run("project", "create", "team-a", "--gpus", "1", "--cpus", "2")
    plane.until("the QOS with cpu=2", lambda: grptres(f"ps-{p}team-a") == gpu_tres(1, 2))
    plane.run("project", "quota", "team-a", "--cpus", "3")
    plane.until("cpu=3", lambda: grptres(f"ps-{p}team-a") == gpu_tres(1, 3))
    plane.run("project", "quota", "team-a", "--gpus", "2")     # the CPU quota stays
    plane.until("gpu=2", lambda: grptres(f"ps-{p}team-a") == gpu_tres(2, 3))
    listed = {x["name"]: (x["deserved"], x["cpus"]) for x in plane.json("project", "list")}
    assert listed == {"team-a": (2, 3)}
    bad = plane.run("project", "quota", "team-a", "--cpus", "-1", check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    # quota 0: no CPU limit on the QOS (cpu=0 would hold back its GPU tasks too)
    plane.run("project", "quota", "team-a", "--cpus", "0")
    plane.until("no cpu limit", lambda: grptres(f"ps-{p}team-a") == gpu_tres(2))

    # ... and a GPU-less job of a project with no CPU quota runs on idle CPUs, borrowed
    plane.run("submit", "free", "-p", "team-a", "--cpu", "1", "--parallelism", "2",
              "--completions", "2", "--", "true")
    job = plane.until("the job to succeed", lambda: (j := plane.job("free", "team-a"))
                      ["job"]["status"] == "Succeeded" and j)
    slurm = next(e["message"] for e in job["events"] if e["kind"] == "Slurm")
    assert slurm.endswith(f"QOS ps_{p}borrow"), slurm
    assert all("(borrowed beyond the quota)" in e["message"]
               for e in job["events"] if e["kind"] == "Started")


def test_a_cpu_quota_binds_idle_cpus_are_lent_and_taken_back(plane: SlurmPlane):
    p = plane.prefix
    plane.run("project", "create", "team-a", "--gpus", "0", "--cpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "0", "--cpus", "14")
    # team-b claims its 14 of the node's 16 CPUs
    plane.run("submit", "hog", "-p", "team-b", "--cpu", "7", "--parallelism", "2",
              "--completions", "2", "--", "sleep", "300")
    hog = plane.until("hog's array", lambda: array(plane, "hog", "team-b"))
    plane.until("hog running", lambda: len(running(plane, hog)) == 2, timeout=90)

    plane.run("submit", "sweep", "-p", "team-a", "--cpu", "1", "--parallelism", "8",
              "--completions", "8", "--", "sleep", "300")
    sweep = plane.until("sweep's array", lambda: array(plane, "sweep", "team-a"))
    plane.until("team-a at its quota, the rest waiting on it", lambda: len(
        running(plane, sweep)) == 2 and any(t["state_reason"] == "QOSGrpCpuLimit"
                                            for t in plane.squeue(sweep)), timeout=90)
    # nothing is idle: nothing is lent, team-a stays at its quota over several polls
    for _ in range(3):
        time.sleep(1)       # podsweep polls Slurm each second
        tasks = running(plane, sweep)
        assert len(tasks) == 2 and {t["qos"] for t in tasks} == {f"ps-{p}team-a"}

    # team-b's CPUs come free: team-a's waiting tasks are lent them
    plane.run("delete", "hog", "-p", "team-b")
    plane.until("8 of sweep running", lambda: len(running(plane, sweep)) == 8, timeout=90)
    qos = sorted(t["qos"] for t in running(plane, sweep))
    assert qos == sorted([f"ps-{p}team-a"] * 2 + [f"ps_{p}borrow"] * 6), qos

    # team-b wants its 14 again: Slurm preempts the borrowed tasks, not the 2 in quota
    plane.run("submit", "hog2", "-p", "team-b", "--cpu", "7", "--parallelism", "2",
              "--completions", "2", "--", "sleep", "300")
    hog2 = plane.until("hog2's array", lambda: array(plane, "hog2", "team-b"))
    plane.until("hog2 running", lambda: len(running(plane, hog2)) == 2, timeout=120)
    tasks = running(plane, sweep)
    assert len(tasks) == 2 and {t["qos"] for t in tasks} == {f"ps-{p}team-a"}, tasks
    plane.until("a preempted pod recorded", lambda: any(
        e["kind"] == "Preempted" for e in plane.job("sweep", "team-a")["events"]))
