"""A real control plane on the real Slurm that scripts/slurm-up.sh starts on this machine.

Each test gets its own podsweep home and its own prefix for Slurm's accounts and QOS, so
tests never see each other's projects; at the end its jobs are cancelled and its accounts
and QOS removed. Without a running Slurm the tests skip, saying so, unless
``PODSWEEP_REQUIRE_SLURM=1`` (CI) turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from podsweep.cluster.slurm.parse import parse_nodes, shards_per_gpu

from ..control.conftest import ControlPlane


def run(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr}")
    return proc.stdout


def gpu_tres(gpus: int, cpus: int = 0) -> str:
    """A project QOS's GrpTRES as sacctmgr shows it: its CPU quota (none if 0), its GPU
    quota, and the same in shards where Slurm cuts GPUs in shards (scripts/slurm-up.sh)."""
    per_gpu = shards_per_gpu(parse_nodes(run("scontrol", "-o", "show", "node")))
    return ",".join([f"cpu={cpus}"] * bool(cpus) + [f"gres/gpu={gpus}"]
                    + [f"gres/shard={gpus * per_gpu}"] * bool(per_gpu))


def slurm_missing() -> str | None:
    """Why Slurm cannot be used here, or None."""
    if shutil.which("sbatch") is None:
        return "Slurm's commands are not installed"
    try:
        if subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10).returncode:
            return "slurmctld does not answer"
        partitions = run("sinfo", "-h", "-o", "%P").split()
        if "borrow" not in partitions:
            return "Slurm has no borrow partition"
        if "gpu" not in run("sacctmgr", "-n", "-P", "show", "tres", "type=gres",
                            "format=name").split():
            return "slurmdbd does not know gres/gpu"
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        return f"Slurm does not answer ({exc})"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    why = slurm_missing()
    if why is None:
        return
    message = f"{why}: start Slurm with scripts/slurm-up.sh (as root)"
    if os.environ.get("PODSWEEP_REQUIRE_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)


def clean_slurm(prefix: str) -> None:
    """Cancel the prefix's jobs and remove its accounts and QOS."""
    accounts = [a for a in run("sacctmgr", "-n", "-P", "show", "account",
                               "format=account").split() if a.startswith(prefix)]
    if accounts:
        jobs = run("squeue", "-h", "-A", ",".join(accounts), "-o", "%A").split()
        if jobs:
            run("scancel", *sorted(set(jobs)), check=False)
        run("sacctmgr", "-i", "delete", "user", "where", f"account={','.join(accounts)}",
            check=False)
        run("sacctmgr", "-i", "delete", "account", ",".join(accounts), check=False)
    qos = [q for q in run("sacctmgr", "-n", "-P", "show", "qos", "format=name").split()
           if q.startswith((f"ps-{prefix}", f"ps_{prefix}"))]
    if qos:
        run("sacctmgr", "-i", "delete", "qos", ",".join(qos), check=False)


class SlurmPlane(ControlPlane):
    def __init__(self, home: Path, prefix: str) -> None:
        super().__init__(home)
        self.prefix = prefix

    def array(self, name: str, project: str) -> str:
        """The Slurm array job id of a job."""
        job = self.job(name, project)
        event = next(e for e in job["events"] if e["kind"] == "Slurm")
        return str(event["message"].split()[2])

    def squeue(self, array: str) -> list[dict]:
        """Slurm's own records of an array's tasks."""
        data = json.loads(run("squeue", "--json"))
        return [j for j in data["jobs"] if str(j["array_job_id"]) == array]

    def stop(self) -> None:
        self.run("down", check=False)


@pytest.fixture
def plane(slurm: None, tmp_path: Path) -> Iterator[SlurmPlane]:
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"slurm_prefix": prefix}))
    cp = SlurmPlane(home, prefix)
    cp.run("up", "--cluster", "slurm")
    try:
        yield cp
    finally:
        cp.stop()
        clean_slurm(prefix)
