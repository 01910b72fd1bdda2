"""``podsweep user``: researchers and the projects they belong to (admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import OutputOption, client, emit
from .printers import Output, table

app = typer.Typer(help="Users (admin).", no_args_is_help=True, rich_markup_mode=None)


@app.command()
def create(name: str,
           project: Annotated[list[str], typer.Option("--project", "-p",
                                                      help="a project (repeatable)")] = [],  # noqa: B006
           admin: Annotated[bool, typer.Option(help="make an admin")] = False) -> None:
    """Create a user; prints the token they log in with."""
    data = client().post("/users", {"name": name, "projects": project, "admin": admin})
    typer.echo(f"User {name} created (shown once):\n  web UI password: {data['password']}\n"
               f"  CLI: podsweep login --token {data['token']}")


@app.command("list")
def list_(output: Annotated[Output, OutputOption] = Output.table) -> None:
    """Users and their projects."""
    rows = client().get("/users")
    emit(output, rows, table(["user", "admin", "projects"],
                             [[u["name"], "yes" if u["admin"] else "no",
                               ",".join(u["projects"]) or "-"] for u in rows]))
