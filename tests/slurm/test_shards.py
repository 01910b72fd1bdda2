"""Shares of one GPU on the real Slurm, as its GPU shards (gres/shard; scripts/slurm-up.sh
cuts each fake GPU in 4): two pods of ``-g 0.5`` run at once on one GPU, each told its
share, the project's quota counts them in shards, and a share that is no whole number of
shards is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from podsweep.cluster.slurm.parse import parse_nodes, shards_per_gpu

from .conftest import SlurmPlane, gpu_tres, run

# Each pod records its GPU and share, then waits for the test's go (bounded: a pod left
# waiting fails rather than hang): the pods that recorded are the ones running at once.
WAIT = ('echo "$CUDA_VISIBLE_DEVICES $PODSWEEP_GPU_FRACTION" > {out}/$PODSWEEP_POD_NAME; '
        'i=0; while [ ! -e {out}/go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; '
        '[ -e {out}/go ]')


def records(out: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text().split() for p in out.iterdir() if p.name != "go"}


@pytest.fixture
def shards(plane: SlurmPlane) -> int:
    per_gpu = shards_per_gpu(parse_nodes(run("scontrol", "-o", "show", "node")))
    if per_gpu != 4:
        pytest.skip(f"this Slurm cuts GPUs in {per_gpu} shards, not 4: run "
                    f"scripts/slurm-up.sh (as root) to cut them")
    return per_gpu


def test_two_half_gpu_pods_share_one_gpu_within_the_quota_in_shards(
        plane: SlurmPlane, shards: int, tmp_path: Path):
    p = plane.prefix
    plane.run("project", "create", "team-a", "--gpus", "1")
    plane.until("the QOS's limit in shards", lambda: run(
        "sacctmgr", "-n", "-P", "show", "qos", "where", f"name=ps-{p}team-a",
        "format=grptres").strip() == gpu_tres(1) == "gres/gpu=1,gres/shard=4")
    out = tmp_path / "out"
    out.mkdir()
    plane.run("submit", "half", "-p", "team-a", "-g", "0.5", "--parallelism", "3",
              "--completions", "3", "--", "sh", "-c", WAIT.format(out=out))
    seen = plane.until("two pods running", lambda: len(records(out)) == 2 and records(out),
                       timeout=120)
    # one GPU, half each: the quota of 1 GPU is 4 shards, so the third task waits on it
    assert len({gpu for gpu, _ in seen.values()}) == 1 and \
        all(share == "0.5" for _, share in seen.values()), seen
    array = plane.array("half", "team-a")
    plane.until("the third on the quota", lambda: [
        t["state_reason"] for t in plane.squeue(array) if t["job_state"] == "PENDING"]
        == ["QOSGrpGRES"], timeout=60)
    assert len(records(out)) == 2
    job = plane.job("half", "team-a")
    assert job["job"]["gpus"] == 0.5 and job["job"]["allocated"] == 1
    assert sorted(p["fraction"] for p in job["pods"] if p["status"] == "Running") == [0.5, 0.5]
    (out / "go").touch()
    job = plane.until("half done", lambda: (j := plane.job("half", "team-a"))["job"]
                      ["status"] in ("Succeeded", "Failed") and j, timeout=180)
    assert job["job"]["status"] == "Succeeded" and len(records(out)) == 3


def test_a_share_that_is_no_whole_number_of_shards_is_refused_in_one_line(
        plane: SlurmPlane, shards: int):
    plane.run("project", "create", "team-a", "--gpus", "1")
    proc = plane.run("submit", "third", "-p", "team-a", "-g", "0.33", "--", "true",
                     check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: -g 0.33: this Slurm cluster cuts each GPU in 4 shards, so a share is a "
        "whole number of them (0.25, 0.5, 0.75)"]
    assert plane.json("list", "-p", "team-a") == []
