"""``podsweep project``: create projects, set their GPU and CPU quotas, choose the default
one."""

from __future__ import annotations

from typing import Annotated, Optional
from urllib.parse import quote

import typer

from ..model import format_gpus
from .common import OutputOption, client, emit, set_default_project
from .printers import Output, table

app = typer.Typer(help="Projects and their GPU and CPU quotas.", no_args_is_help=True,
                  rich_markup_mode=None)


CPUS_HELP = ("deserved CPUs (0: no CPU quota: on the local cluster its pods borrow idle CPUs; "
             "on Slurm and Kubernetes its GPU jobs' CPUs are not limited)")


def check_quotas(gpus: int | None, cpus: int | None) -> None:
    """Refused here, in the flags' own words, before the API says the same of its fields."""
    from ..model import MAX_QUOTA, check_count

    for flag, value in (("--gpus", gpus), ("--cpus", cpus)):
        if value is not None:
            check_count(flag, value, 0, MAX_QUOTA)


@app.command()
def create(name: str,
           gpus: Annotated[int, typer.Option("--gpus", "-g", help="deserved GPUs")] = 0,
           cpus: Annotated[int, typer.Option("--cpus", "-c", help=CPUS_HELP)] = 0) -> None:
    """Add a project with a GPU quota and a CPU quota (admin)."""
    check_quotas(gpus, cpus)
    client().post("/projects", {"name": name, "gpus": gpus, "cpus": cpus})
    typer.echo(f"Project {name} created with {gpus} deserved GPU(s) and {cpus} deserved "
               f"CPU(s)")


@app.command("list")
def list_(output: Annotated[Output, OutputOption] = Output.table) -> None:
    """Projects with their quota, GPUs in use, running and pending pods."""
    rows = client().get("/projects")
    emit(output, rows, table(
        ["project", "deserved gpus", "allocated", "cpus (deserved/allocated)", "running pods",
         "pending pods"],
        [[p["name"], p["deserved"], format_gpus(p["allocated"]),
          f"{p['cpus']}/{p['allocated_cpus']}",
          p["running"], p["pending"]] for p in rows]))


@app.command("set")
def set_(name: str) -> None:
    """Make NAME the default project of later commands."""
    projects = {p["name"] for p in client().get("/projects")}
    if name not in projects:
        from ..errors import NotFound

        raise NotFound(f"project {name!r} not found (or you are not a member)")
    set_default_project(name)
    typer.echo(f"Project {name} has been set as the default project")


@app.command()
def quota(name: str,
          gpus: Annotated[Optional[int], typer.Option("--gpus", "-g", help="deserved GPUs")]
          = None,
          cpus: Annotated[Optional[int], typer.Option("--cpus", "-c", help=CPUS_HELP)]
          = None) -> None:
    """Change a project's GPU quota, CPU quota or both (admin)."""
    check_quotas(gpus, cpus)
    if gpus is None and cpus is None:
        from ..errors import UsageError

        raise UsageError("give a new quota: --gpus G, --cpus C or both")
    body = {k: v for k, v in (("gpus", gpus), ("cpus", cpus)) if v is not None}
    client().put(f"/projects/{name}/quota", body)
    said = " and ".join(f"{v} {k[:-1].upper()}(s)" for k, v in body.items())
    typer.echo(f"Project {name} now deserves {said}")


@app.command("remove-member")
def remove_member(name: str, user: str) -> None:
    """Take USER out of project NAME: they no longer see or touch its jobs (admin)."""
    client().delete(f"/projects/{quote(name, safe='')}/members/{quote(user, safe='')}")
    typer.echo(f"{user} is no longer a member of project {name}")
