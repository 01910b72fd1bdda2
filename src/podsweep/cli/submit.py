"""``podsweep submit``: one command, run as many pods (runai's flags and meanings)."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from ..model import parse_env
from .common import ProjectOption, client, default_project


def submit(
    name: Annotated[str, typer.Argument(help="the job's name")],
    command: Annotated[Optional[list[str]], typer.Argument(
        help="the command each pod runs, after --")] = None,
    gpu: Annotated[int, typer.Option("--gpu", "-g", help="GPUs per pod")] = 0,
    parallelism: Annotated[int, typer.Option(help="pods running at once, at most")] = 1,
    completions: Annotated[int, typer.Option(help="pods that must succeed")] = 1,
    volume: Annotated[list[str], typer.Option(
        "--volume", "-v", help="SRC:DST[:ro], repeatable")] = [],  # noqa: B006
    environment: Annotated[list[str], typer.Option(
        "--environment", "-e", help="KEY=VALUE, repeatable")] = [],  # noqa: B006
    working_dir: Annotated[Optional[str], typer.Option(
        help="where the command runs (default: here)")] = None,
    image: Annotated[Optional[str], typer.Option("--image", "-i", help="container image")] = None,
    cpu: Annotated[int, typer.Option(help="CPUs per pod (sets OMP_NUM_THREADS)")] = 1,
    backoff_limit: Annotated[int, typer.Option(help="failed pods tolerated")] = 6,
    grace_period: Annotated[float, typer.Option(
        help="seconds between SIGTERM and SIGKILL when a pod is stopped")] = 30.0,
    project: Annotated[Optional[str], ProjectOption] = None,
) -> None:
    """Submit a job: COMPLETIONS pods of COMMAND, PARALLELISM at a time, GPU GPUs each."""
    body = {"name": name, "project": default_project(project), "command": command or [],
            "gpus": gpu, "parallelism": parallelism, "completions": completions,
            "cpu": cpu, "volumes": volume, "env": parse_env(environment),
            "working_dir": working_dir or os.getcwd(), "image": image,
            "backoff_limit": backoff_limit, "grace_period": grace_period}
    job = client().post("/jobs", body)
    typer.echo(f"The job '{job['name']}' has been submitted successfully to project "
               f"{job['project']}: {job['completions']} pods, at most {job['parallelism']} at "
               f"a time, {job['gpus']} GPU(s) each")
