"""What a JobSpec becomes in Slurm: the sbatch line, and the batch script run by a real
bash the way slurmd runs it (its SLURM_* variables set), so no Slurm is needed."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from podsweep.cluster.slurm.accounts import grp_tres
from podsweep.cluster.slurm.script import (
    array_name,
    batch_script,
    host_path,
    sbatch_command,
    shards_of,
)
from podsweep.errors import UsageError
from podsweep.model import JobSpec, Volume


def run_task(script: str, job_dir: Path, index: int, restarts: int | None,
             gpus: str = "") -> None:
    """Run the script as slurmd runs an array task: from Slurm's own variables only."""
    path = job_dir / "job.sh"
    path.write_text(script)
    env = {"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": str(index),
           "CUDA_VISIBLE_DEVICES": gpus}
    if restarts is not None:
        env["SLURM_RESTART_COUNT"] = str(restarts)
    subprocess.run(["bash", str(path)], env=env, check=True, timeout=30, cwd=job_dir)


def test_the_sbatch_line() -> None:
    spec = JobSpec("hpo1", "team-a", ["python", "train.py"], gpus=2, parallelism=3,
                   completions=12, cpu=4)
    script = Path("/home/u/.podsweep/slurm/ab12cd34/job.sh")
    assert sbatch_command(spec, script, name=array_name("hpo1", "ab12cd34"),
                          account="t-team-a", qos="ps-t-team-a", partition="gpu") == [
        "sbatch", "--parsable", "--export=NIL", "--array=0-11%3", "--account=t-team-a",
        "--qos=ps-t-team-a", "--partition=gpu", "--job-name=hpo1.ab12cd34",
        "--cpus-per-task=4", "--output=/home/u/.podsweep/slurm/ab12cd34/%A_%a.out",
        "--open-mode=append", "--requeue", "--chdir=/home/u/.podsweep/slurm/ab12cd34",
        "--gres=gpu:2", str(script)]
    # no GPUs: no --gres at all
    cpu_only = sbatch_command(JobSpec("c", "p", ["true"]), script, name="c.x", account="p",
                              qos="ps_borrow", partition="borrow")
    assert not any(a.startswith("--gres") for a in cpu_only)
    assert "--array=0-0%1" in cpu_only


def test_a_task_gets_its_pods_variables_log_and_gpus(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")               # allowlisted: passed on
    monkeypatch.setenv("PODSWEEP_TOKEN", "secret")      # the control plane's: never
    monkeypatch.setenv("PODSWEEP_HOME", "/srv/podsweep")
    spec = JobSpec("hpo1", "team-a", ["sh", "-c", "env | sort; pwd"], cpu=3,
                   env={"LR": "0.1", "QUOTED": "a b $(touch pwned) 'c'"},
                   working_dir=str(tmp_path))
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    run_task(batch_script(spec, "ab12cd34", job_dir, spec.command), job_dir, 5, 2, "1,3")
    log = (job_dir / "hpo1-5-2.log").read_text().splitlines()
    env = dict(line.split("=", 1) for line in log[:-1] if "=" in line)
    assert {k: env.get(k) for k in (
        "PODSWEEP_JOB_NAME", "PODSWEEP_JOB_UID", "PODSWEEP_PROJECT", "PODSWEEP_POD_NAME",
        "PODSWEEP_POD_INDEX", "JOB_COMPLETION_INDEX", "PODSWEEP_POD_ATTEMPT",
        "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS", "LR", "QUOTED",
        "LANG", "SLURM_EXPORT_ENV")} == {
        "PODSWEEP_JOB_NAME": "hpo1", "PODSWEEP_JOB_UID": "ab12cd34",
        "PODSWEEP_PROJECT": "team-a", "PODSWEEP_POD_NAME": "hpo1-5-2",
        "PODSWEEP_POD_INDEX": "5", "JOB_COMPLETION_INDEX": "5", "PODSWEEP_POD_ATTEMPT": "2",
        "CUDA_VISIBLE_DEVICES": "1,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "OMP_NUM_THREADS": "3", "LR": "0.1", "QUOTED": "a b $(touch pwned) 'c'",
        "LANG": "C.UTF-8", "SLURM_EXPORT_ENV": "ALL"}
    assert "PODSWEEP_TOKEN" not in env and "PODSWEEP_HOME" not in env
    assert not (job_dir / "pwned").exists() and not (tmp_path / "pwned").exists()
    assert log[-1] == str(tmp_path)          # --working-dir
    # the GPUs Slurm gave it, for a pod that ends before podsweep sees it run
    assert (job_dir / "hpo1-5-2.gpus").read_text() == "1,3"


def test_a_first_attempt_and_its_log_appended(tmp_path: Path) -> None:
    spec = JobSpec("j", "p", ["sh", "-c", 'echo "attempt $PODSWEEP_POD_ATTEMPT"; pwd'])
    script = batch_script(spec, "u1", tmp_path, spec.command)
    run_task(script, tmp_path, 0, None)         # Slurm sets no restart count at first
    run_task(script, tmp_path, 0, None)
    # no --working-dir: the task runs where sbatch --chdir put it (here: cwd=tmp_path)
    assert (tmp_path / "j-0-0.log").read_text() == f"attempt 0\n{tmp_path}\nattempt 0\n" \
        f"{tmp_path}\n"
    assert (tmp_path / "j-0-0.gpus").read_text() == ""


def test_the_command_is_exec_d_with_each_argument_quoted(tmp_path: Path) -> None:
    odd = ["printf", "%s|", "a b", "$HOME", "'quoted'", "; touch pwned", "*"]
    script = batch_script(JobSpec("j", "p", odd), "u1", tmp_path, odd)
    assert script.startswith("#!/bin/bash\n# podsweep job j (u1) of project p: one array "
                             "task per pod\n")
    assert script.splitlines()[-1].startswith("exec printf ")
    run_task(script, tmp_path, 1, 0)
    assert (tmp_path / "j-1-0.log").read_text() == "a b|$HOME|'quoted'|; touch pwned|*|"
    assert not (tmp_path / "pwned").exists()


def test_a_missing_working_dir_ends_the_task(tmp_path: Path) -> None:
    spec = JobSpec("j", "p", ["true"], working_dir=str(tmp_path / "gone"))
    (tmp_path / "job.sh").write_text(batch_script(spec, "u1", tmp_path, spec.command))
    proc = subprocess.run(["bash", str(tmp_path / "job.sh")], timeout=30, cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": "0"})
    assert proc.returncode == 1
    assert "gone" in (tmp_path / "j-0-0.log").read_text()


@pytest.mark.parametrize("working_dir, volumes, expected", [
    ("/work/run", [], "/work/run"),
    ("/data/exp1", ["/srv/nfs:/data"], "/srv/nfs/exp1"),
    ("/data", ["/srv/nfs:/data"], "/srv/nfs"),
    ("/data2", ["/srv/nfs:/data"], "/data2"),                      # not inside /data
    ("/data/a/b", ["/srv/nfs:/data", "/srv/a:/data/a"], "/srv/a/b"),  # the deepest wins
])
def test_the_working_dir_on_this_machine(working_dir: str, volumes: list[str],
                                         expected: str) -> None:
    spec = JobSpec("j", "p", ["true"], working_dir=working_dir,
                   volumes=[Volume.parse(v) for v in volumes])
    assert host_path(spec) == expected


def test_a_share_of_one_gpu_is_that_many_of_its_shards(tmp_path: Path) -> None:
    half = JobSpec("h", "p", ["sh", "-c", "env"], gpus=Fraction(1, 2), parallelism=2,
                   completions=2)
    assert shards_of(half, 4) == 2 and shards_of(half, 10) == 5
    assert shards_of(JobSpec("w", "p", ["true"], gpus=2), 4) == 0
    line = sbatch_command(half, tmp_path / "job.sh", name="h.x", account="p", qos="ps-p",
                          partition="gpu", shards=2)
    assert "--gres=shard:2" in line and not any(a.startswith("--gres=gpu") for a in line)
    # the pod is told its share, as on the local cluster; the job's -e may lower JAX's
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    run_task(batch_script(half, "ab12cd34", job_dir, half.command), job_dir, 0, None, "2")
    env = dict(line.split("=", 1) for line in
               (job_dir / "h-0-0.log").read_text().splitlines() if "=" in line)
    assert (env["CUDA_VISIBLE_DEVICES"], env["PODSWEEP_GPU_FRACTION"],
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == ("2", "0.5", "0.5")
    lower = JobSpec("h", "p", ["true"], gpus=Fraction(1, 2),
                    env={"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.4"})
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION=0.4" in batch_script(lower, "u", job_dir, ["true"])
    assert "PODSWEEP_GPU_FRACTION" not in batch_script(
        JobSpec("w", "p", ["true"], gpus=1), "u", job_dir, ["true"])


@pytest.mark.parametrize(("gpus", "per_gpu", "says"), [
    (Fraction(1, 3), 4, "-g 0.33: this Slurm cluster cuts each GPU in 4 shards, so a share "
                        "is a whole number of them (0.25, 0.5, 0.75)"),
    (Fraction(1, 2), 0, "-g 0.5: this Slurm cluster has no GPU shards (gres/shard) to give "
                        "a pod a share of one GPU; use a whole number of GPUs"),
])
def test_a_share_that_is_no_whole_number_of_shards_is_refused_in_one_line(
        gpus: Fraction, per_gpu: int, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        shards_of(JobSpec("h", "p", ["true"], gpus=gpus), per_gpu)
    assert str(caught.value) == says


def test_a_quota_in_gpus_is_one_in_shards_too() -> None:
    assert grp_tres(2, 8, 4) == "GrpTRES=gres/gpu=2,gres/shard=8,cpu=8"
    assert grp_tres(2, 0) == "GrpTRES=gres/gpu=2,cpu=-1"     # a Slurm without shards
