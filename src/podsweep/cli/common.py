"""What every verb shares: where the home is, the logged-in client, the default project,
and printing a result the way the user asked (-o table|json|yaml)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import Unauthorized, Unavailable, UsageError
from .printers import Output, to_yaml

if TYPE_CHECKING:
    from ..client import Client


def home() -> Path:
    """``$PODSWEEP_HOME``, else the user's data directory."""
    env = os.environ.get("PODSWEEP_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("podsweep"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def server_url() -> str:
    url = os.environ.get("PODSWEEP_URL") or read_json(home() / "credentials.json").get("url")
    if url:
        return str(url)
    from ..homedir import read_server

    record = read_server(home())
    if record is None:
        raise Unavailable("the podsweep control plane is not running; start it with podsweep up")
    return str(record["url"])


def client() -> Client:
    token = os.environ.get("PODSWEEP_TOKEN") or read_json(home() / "credentials.json").get("token")
    if not token:
        raise Unauthorized("not logged in: run podsweep up (admin) or podsweep login")
    url = server_url()
    # httpx, the slowest import of all: by the commands that talk to the API, once they can
    from ..client import Client

    return Client(url, str(token))


def configured_project(explicit: str | None) -> str | None:
    """-p, else $PODSWEEP_PROJECT, else the one set with podsweep project set, else None."""
    project = explicit or os.environ.get("PODSWEEP_PROJECT") or \
        read_json(home() / "cli.json").get("project")
    return str(project) if project else None


def default_project(explicit: str | None) -> str:
    project = configured_project(explicit)
    if not project:
        raise UsageError("no project: pass -p PROJECT or set one with podsweep project set NAME")
    return project


def set_default_project(name: str) -> None:
    path = home() / "cli.json"
    data = read_json(path)
    data["project"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def emit(output: Output, data: Any, table: str) -> None:
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2))
    elif output is Output.yaml:
        typer.echo(to_yaml(data))
    else:
        typer.echo(table)


OutputOption = typer.Option("--output", "-o", help="table, json or yaml")
ProjectOption = typer.Option("--project", "-p", help="the project (default: podsweep project set)")
