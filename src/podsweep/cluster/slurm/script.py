"""What a job is in Slurm: its array's name, the batch script every task runs and the sbatch
command line that submits it (a share of one GPU as Slurm's shards of one, ``gres/shard``).
Pure functions of the :class:`~podsweep.model.JobSpec`."""

from __future__ import annotations

import shlex
from fractions import Fraction
from pathlib import Path

from ...errors import UsageError
from ...model import JobSpec, format_gpus
from ..podenv import base_env, share_variables


def shards_of(spec: JobSpec, per_gpu: int) -> int:
    """The shards (gres/shard) each pod of ``spec`` asks for, where each GPU is cut in
    ``per_gpu`` of them (0: Slurm has no shards); 0 for a job of whole GPUs. A share that is
    not a whole number of shards is refused in one line: rounding it either way would give
    the pod more or less of the GPU than it asked for, and the quota would count it wrong."""
    if not isinstance(spec.gpus, Fraction):
        return 0
    asked = f"-g {format_gpus(spec.gpus)}"
    if per_gpu == 0:
        raise UsageError(f"{asked}: this Slurm cluster has no GPU shards (gres/shard) to "
                         f"give a pod a share of one GPU; use a whole number of GPUs")
    shards = spec.gpus * per_gpu
    if shards.denominator != 1:
        each = ", ".join(format_gpus(Fraction(k, per_gpu)) for k in range(1, per_gpu))
        raise UsageError(f"{asked}: this Slurm cluster cuts each GPU in {per_gpu} shards, "
                         f"so a share is a whole number of them ({each})")
    return int(shards)


def array_name(name: str, uid: str) -> str:
    """The array's name in Slurm: the job's name and uid, to find it by (squeue, sacct)."""
    return f"{name}.{uid}"


def host_path(spec: JobSpec) -> str:
    """Where the working directory is on this machine: it may lie inside a volume."""
    path = str(spec.working_dir)
    for volume in sorted(spec.volumes, key=lambda v: -len(v.dst)):
        if path == volume.dst or path.startswith(volume.dst.rstrip("/") + "/"):
            return volume.src + path[len(volume.dst):]
    return path


def batch_script(spec: JobSpec, uid: str, job_dir: Path, argv: list[str]) -> str:
    """The script each array task runs: the pod's variables, its log, then ``argv``."""
    q = shlex.quote
    lines = ["#!/bin/bash",
             f"# podsweep job {spec.name} ({uid}) of project {spec.project}: one array "
             f"task per pod"]
    # sbatch --export=NIL: the task starts from Slurm's own variables (NONE would load
    # the user's login environment on the node), then gets the allowlist of the control
    # plane's (podenv) and the job's, never PODSWEEP_HOME & co. An srun in the pod passes
    # all of that on to its steps (SLURM_EXPORT_ENV would say NIL to it).
    # JobSpec allows plain names only; quoted all the same, as a second line of defence
    lines += [f"export {q(k)}={q(v)}" for k, v in {**base_env(), **spec.env}.items()]
    lines.append("export SLURM_EXPORT_ENV=ALL")
    lines += [f"export PODSWEEP_JOB_NAME={q(spec.name)} PODSWEEP_JOB_UID={uid} "
              f"PODSWEEP_PROJECT={q(spec.project)}",
              'export PODSWEEP_POD_INDEX="$SLURM_ARRAY_TASK_ID" '
              'JOB_COMPLETION_INDEX="$SLURM_ARRAY_TASK_ID"',
              'export PODSWEEP_POD_ATTEMPT="${SLURM_RESTART_COUNT:-0}"',
              f'export PODSWEEP_POD_NAME={q(spec.name)}-"$SLURM_ARRAY_TASK_ID-'
              f'$PODSWEEP_POD_ATTEMPT"',
              f"export CUDA_DEVICE_ORDER=PCI_BUS_ID OMP_NUM_THREADS={spec.cpu}",
              *share_lines(spec),
              # the GPUs Slurm gave it, for a pod that ends before podsweep sees it run
              f'printf %s "$CUDA_VISIBLE_DEVICES" >{q(str(job_dir))}/"$PODSWEEP_POD_NAME'
              f'.gpus"',
              # one log per attempt: the pod's log, as on the local cluster
              f'exec >>{q(str(job_dir))}/"$PODSWEEP_POD_NAME.log" 2>&1']
    if spec.working_dir and not spec.volumes:
        lines.append(f"cd {q(spec.working_dir)} || exit 1")
    lines.append("exec " + " ".join(q(a) for a in argv))
    return "\n".join(lines) + "\n"


def share_lines(spec: JobSpec) -> list[str]:
    """A pod of a share of one GPU is told it, as on the local cluster (a contract with its
    program: Slurm's shards do not limit memory or compute); the job's ``-e`` may set JAX's
    cap lower."""
    if not isinstance(spec.gpus, Fraction):
        return []
    share = share_variables(spec.gpus)["PODSWEEP_GPU_FRACTION"]
    jax = "" if "XLA_PYTHON_CLIENT_MEM_FRACTION" in spec.env else \
        f" XLA_PYTHON_CLIENT_MEM_FRACTION={share}"
    return [f"export PODSWEEP_GPU_FRACTION={share}{jax}"]


def sbatch_command(spec: JobSpec, script: Path, *, name: str, account: str, qos: str,
                   partition: str, shards: int = 0) -> list[str]:
    """``sbatch`` of the job's array: ``completions`` tasks, ``parallelism`` at once, each
    its own GPUs and CPUs (or ``shards`` of one GPU, for a share of one); its output beside
    the script."""
    sbatch = ["sbatch", "--parsable", "--export=NIL",
              f"--array=0-{spec.completions - 1}%{spec.parallelism}",
              f"--account={account}",
              f"--qos={qos}", f"--partition={partition}",
              f"--job-name={name}", f"--cpus-per-task={spec.cpu}",
              f"--output={script.parent}/%A_%a.out", "--open-mode=append", "--requeue",
              f"--chdir={script.parent}"]
    if shards:
        sbatch.append(f"--gres=shard:{shards}")
    elif spec.gpus:
        sbatch.append(f"--gres=gpu:{spec.gpus}")
    return [*sbatch, str(script)]
