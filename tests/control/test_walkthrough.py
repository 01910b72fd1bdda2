"""The walk-through, end to end, on the local control plane with the real training script.

4 virtual GPUs; team-a and team-b deserve 2 each. hpo1 (team-a): 12 pods of
examples/hpo_digits.py, 3 at a time, one GPU each, the shared directory at /nfs/hpo. Then
team-b claims its 2 GPUs: one hpo1 pod is preempted, its trial is picked up again later and
resumes from its checkpoint, and all 12 configurations complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

import podsweep.hpo as hpo

from .conftest import ControlPlane

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hpo_digits.py"


def paced(slow: float, fast: float) -> str:
    """``sh -c`` that runs its arguments with --epoch-seconds: ``slow`` for the first
    attempt of the first three pods (the one preempted is among them: its trial must still
    be going when team-b's job comes), ``fast`` for the rest of the sweep, reruns included,
    whose length is otherwise the test's."""
    return (f'case "$PODSWEEP_POD_INDEX-$PODSWEEP_POD_ATTEMPT" in [012]-0) s={slow} ;; '
            f'*) s={fast} ;; esac; exec "$0" "$@" --epoch-seconds "$s"')


def test_the_walkthrough(plane: ControlPlane, tmp_path: Path):
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    plane.run("project", "create", "team-a", "--gpus", "2")
    plane.run("project", "create", "team-b", "--gpus", "2")
    plane.run("project", "set", "team-a")
    plane.run("submit", "hpo1", "-g", "1", "--parallelism", "3", "--completions", "12",
              "-v", f"{nfs}:/nfs/hpo", "--grace-period", "20", "--", "sh", "-c",
              paced(slow=0.4, fast=0.1), sys.executable, str(EXAMPLE), "--epochs", "8")

    # 3 pods run: one of them over team-a's quota, on an idle GPU
    plane.until("3 hpo1 pods running", lambda: plane.job("hpo1", "team-a")["job"]["running"] == 3)
    row = plane.run("list").stdout.splitlines()[1].split()
    assert row[:2] == ["hpo1", "Running"] and "3 (3)" in " ".join(row)
    team_a = {p["name"]: p for p in plane.json("project", "list")}["team-a"]
    assert team_a["allocated"] == 3 and team_a["deserved"] == 2

    # team-b needs its 2 GPUs: the newest hpo1 pod is preempted
    plane.until("an hpo1 pod past its first epoch", lambda: any(
        "epoch 0:" in (Path(p) / "pod.log").read_text()
        for p in (plane.home / "pods").glob("*/hpo1-*-0") if (Path(p) / "pod.log").exists()))
    plane.run("submit", "train", "-p", "team-b", "-g", "2", "--", "sleep", "12")
    job = plane.until("a preemption", lambda: (lambda j: j if any(
        e["kind"] == "Preempted" for e in j["events"]) else None)(plane.job("hpo1", "team-a")))
    preempted = next(e["message"].split()[1].rstrip(":") for e in job["events"]
                     if e["kind"] == "Preempted")
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

    # the preempted pod's index ran again, and some later pod (whichever picked first)
    # was handed the preempted trial and resumed it from its checkpoint
    index = preempted.split("-")[1]
    names = [p["name"] for p in job["pods"]]
    assert f"hpo1-{index}-1" in names
    logs = {n: p.stdout for n, p in zip(names, plane.run_all(
        *(["logs", "hpo1", "--pod", n] for n in names)))}
    resumed = [n for n, text in logs.items() if "Picked preempted HPO experiment #" in text]
    assert len(resumed) == 1, {n: t[:200] for n, t in logs.items()}
    assert "Resuming from checkpoint" in logs[resumed[0]]
    assert "Using HPO directory /nfs/hpo" in logs[preempted]
    assert "Picked HPO experiment #" in logs[preempted]

    # one file holds the 12 configurations with their reports; the best is marked
    uid = job["job"]["uid"]
    results = hpo.results(nfs / f"hpo1-{uid}")
    assert len(results) == 12 and all(t.status == "finished" for t in results)
    assert len({tuple(sorted(t.config.items())) for t in results}) == 12
    assert all(t.epoch == 7 for t in results)
    assert sorted(t.attempts for t in results)[-1] == 2
    show = plane.run("hpo", "show", str(nfs / f"hpo1-{uid}")).stdout
    assert show.splitlines()[1].split()[0] == "TRIAL" and show.splitlines()[2].startswith("best")

    plane.run("delete", "hpo1")
    assert [j["name"] for j in plane.json("list", "-A")] == ["train"]
