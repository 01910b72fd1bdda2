"""``podsweep submit`` and ``podsweep render``: a job from runai's flags and meanings.

Both commands take the same options (:func:`job_options`); ``submit`` sends the job to the
control plane, ``render`` prints the Kubernetes objects it would be, without a cluster.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any, Optional

import typer

from ..model import (
    JOB_DEFAULTS,
    check_command_size,
    check_grace_period,
    format_gpus,
    gpus_number,
    parse_env,
    parse_gpus,
)
from .common import OutputOption, ProjectOption, client, default_project, emit
from .printers import Output, to_yaml


def job_options(
    name: Annotated[str, typer.Argument(help="the job's name")],
    command: Annotated[Optional[list[str]], typer.Argument(
        help="the command each pod runs, after --")] = None,
    gpu: Annotated[str, typer.Option(
        "--gpu", "-g", help="GPUs per pod: a whole number, or a share of one GPU in (0, 1) "
        "such as 0.5 (local cluster, and Slurm with GPU shards)")] = str(JOB_DEFAULTS["gpus"]),
    parallelism: Annotated[int, typer.Option(
        help="pods running at once, at most")] = JOB_DEFAULTS["parallelism"],
    completions: Annotated[int, typer.Option(
        help="pods that must succeed")] = JOB_DEFAULTS["completions"],
    volume: Annotated[list[str], typer.Option(
        "--volume", "-v", help="SRC:DST[:ro], repeatable; on Kubernetes also "
        "nfs://SERVER/EXPORT:DST[:ro] and pvc:CLAIM:DST[:ro]")] = [],  # noqa: B006
    environment: Annotated[list[str], typer.Option(
        "--environment", "-e", help="KEY=VALUE, repeatable")] = [],  # noqa: B006
    working_dir: Annotated[Optional[str], typer.Option(
        help="where the command runs (default: the directory you submit from, where pods "
             "share this filesystem: local, Slurm; with -i, or on Kubernetes, the image's "
             "own)")
    ] = JOB_DEFAULTS["working_dir"],
    image: Annotated[Optional[str], typer.Option(
        "--image", "-i", help="run each pod in this container image (local: through "
        "podman; Kubernetes: the pod's image)")] = JOB_DEFAULTS["image"],
    cpu: Annotated[int, typer.Option(
        help="CPUs per pod (sets OMP_NUM_THREADS)")] = JOB_DEFAULTS["cpu"],
    backoff_limit: Annotated[int, typer.Option(
        help="failed pods tolerated")] = JOB_DEFAULTS["backoff_limit"],
    grace_period: Annotated[float, typer.Option(
        help="seconds between SIGTERM and SIGKILL when a pod is stopped"
    )] = JOB_DEFAULTS["grace_period"],
    project: Annotated[Optional[str], ProjectOption] = None,
    output: Annotated[Output, OutputOption] = Output.table,
) -> tuple[dict[str, Any], Output]:
    """The options of a job, as the API takes them, and the output asked for.

    What JSON cannot carry (``--grace-period nan``) or the control plane would refuse
    after the upload (a command too big to exec) is refused here, in one line."""
    env = parse_env(environment)
    check_grace_period(grace_period)
    check_command_size(command or [], env)
    body = {"name": name, "project": default_project(project), "command": command or [],
            "gpus": gpus_number(parse_gpus(gpu)), "parallelism": parallelism,
            "completions": completions, "cpu": cpu, "volumes": volume, "env": env,
            "working_dir": working_dir, "image": image,
            "backoff_limit": backoff_limit, "grace_period": grace_period}
    return body, output


@functools.wraps(job_options)
def submit(*args: Any, **kwargs: Any) -> None:
    body, output = job_options(*args, **kwargs)
    api = client()
    elsewhere = False
    if body["working_dir"] is None:
        # a pod in an image starts in the image's working directory, as `podman run`'s
        # does, wherever the cluster runs it
        if not body["image"] and api.get("/status")["shared_filesystem"]:
            body["working_dir"] = os.getcwd()   # a relative script path works as typed
        else:
            elsewhere = True
    job = api.post("/jobs", body)
    if elsewhere:        # said once the job is taken: a refusal stays one line
        typer.echo("note: pods start in their image's working directory on this "
                   "cluster, not here (--working-dir sets another)", err=True)
    emit(output, job, f"The job '{job['name']}' has been submitted successfully to project "
                      f"{job['project']}: {job['completions']} pods, at most "
                      f"{job['parallelism']} at a time, {format_gpus(job['gpus'])} GPU(s) each")


submit.__doc__ = "Submit a job: COMPLETIONS pods of COMMAND, PARALLELISM at a time."


@functools.wraps(job_options)
def render(*args: Any, **kwargs: Any) -> None:
    from ..cluster.kubernetes.objects import job_object
    from ..model import JobSpec

    body, output = job_options(*args, **kwargs)
    job = job_object(JobSpec.from_request(body), user=os.environ.get("USER", "podsweep"))
    if output is Output.json:
        import json

        typer.echo(json.dumps(job, indent=2))
    else:
        typer.echo(to_yaml(job))


render.__doc__ = ("Print the Kubernetes Job (Indexed, queued in the project's Kueue "
                  "LocalQueue) that a submit would create, without a cluster.")
