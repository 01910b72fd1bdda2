"""``podsweep user``: researchers and the projects they belong to (admin).

A token is shown once, when it is made (``create``, ``rotate-token``); only its hash is
stored. It goes to its user by a private channel: they log in with ``podsweep login``, which
reads it from a prompt, standard input or ``$PODSWEEP_TOKEN``, never from the command line.
"""

from __future__ import annotations

import os
from typing import Annotated
from urllib.parse import quote

import typer

from ..homedir import write_private
from .common import OutputOption, client, emit, home, read_json
from .printers import Output, table

app = typer.Typer(help="Users (admin).", no_args_is_help=True, rich_markup_mode=None)

LOGIN_HOW = ("they log in with: podsweep login (and paste the token at the prompt; or "
             "podsweep login --token - < FILE, or with PODSWEEP_TOKEN set)")


@app.command()
def create(name: str,
           project: Annotated[list[str], typer.Option("--project", "-p",
                                                      help="a project (repeatable)")] = [],  # noqa: B006
           admin: Annotated[bool, typer.Option(help="make an admin")] = False) -> None:
    """Create a user; prints the password and the token they log in with."""
    data = client().post("/users", {"name": name, "projects": project, "admin": admin})
    typer.echo(f"User {name} created (shown once):\n  web UI password: {data['password']}\n"
               f"  CLI token: {data['token']}\n{LOGIN_HOW}")


@app.command("list")
def list_(output: Annotated[Output, OutputOption] = Output.table) -> None:
    """Users and their projects."""
    rows = client().get("/users")
    emit(output, rows, table(["user", "admin", "projects"],
                             [[u["name"], "yes" if u["admin"] else "no",
                               ",".join(u["projects"]) or "-"] for u in rows]))


@app.command()
def delete(name: str) -> None:
    """Delete a user: their tokens, sessions and memberships; their jobs stay."""
    client().delete(f"/users/{quote(name, safe='')}")
    typer.echo(f"User {name} deleted (their jobs stay)")


@app.command("rotate-token")
def rotate_token(name: str) -> None:
    """Give a user a new token; every older one stops working."""
    token = client().post(f"/users/{quote(name, safe='')}/token", {})["token"]
    typer.echo(f"New token for {name} (shown once; the old ones no longer work):\n"
               f"  CLI token: {token}\n{LOGIN_HOW}")
    path = home() / "credentials.json"
    credentials = read_json(path)
    if credentials.get("user") == name and not os.environ.get("PODSWEEP_TOKEN"):
        write_private(path, {**credentials, "token": token})    # your own: stay logged in
        typer.echo(f"(this CLI is logged in as {name}: {path} holds the new token)")


@app.command("revoke-token")
def revoke_token(name: str) -> None:
    """Stop every token of a user from working (until rotate-token gives a new one)."""
    revoked = client().delete(f"/users/{quote(name, safe='')}/token")["revoked"]
    typer.echo(f"Revoked {revoked} token(s) of {name}")
