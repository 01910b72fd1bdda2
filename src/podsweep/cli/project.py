"""``podsweep project``: create projects, set their GPU quota, choose the default one."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from .common import OutputOption, client, emit, set_default_project
from .printers import Output, table

app = typer.Typer(help="Projects and their GPU quotas.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command()
def create(name: str,
           gpus: Annotated[int, typer.Option("--gpus", "-g", help="deserved GPUs")] = 0) -> None:
    """Add a project with a GPU quota (admin)."""
    client().post("/projects", {"name": name, "gpus": gpus})
    typer.echo(f"Project {name} created with {gpus} deserved GPU(s)")


@app.command("list")
def list_(output: Annotated[Output, OutputOption] = Output.table) -> None:
    """Projects with their quota, GPUs in use, running and pending pods."""
    rows = client().get("/projects")
    emit(output, rows, table(
        ["project", "deserved gpus", "allocated", "running pods", "pending pods"],
        [[p["name"], p["deserved"], p["allocated"], p["running"], p["pending"]] for p in rows]))


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
          gpus: Annotated[int, typer.Option("--gpus", "-g", help="deserved GPUs")]) -> None:
    """Change a project's GPU quota (admin)."""
    client().put(f"/projects/{name}/quota", {"gpus": gpus})
    typer.echo(f"Project {name} now deserves {gpus} GPU(s)")


@app.command("remove-member")
def remove_member(name: str, user: str) -> None:
    """Take USER out of project NAME: they no longer see or touch its jobs (admin)."""
    client().delete(f"/projects/{quote(name, safe='')}/members/{quote(user, safe='')}")
    typer.echo(f"{user} is no longer a member of project {name}")
