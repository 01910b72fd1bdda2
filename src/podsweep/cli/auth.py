"""``podsweep login`` and ``logout``: the CLI's credentials (readable by the user alone)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..homedir import write_private
from .common import home, server_url


def login(token: Annotated[str, typer.Option(help="the token printed by podsweep user create")],
          url: Annotated[Optional[str], typer.Option(
              help="the control plane's URL (default: the local one)")] = None) -> None:
    """Log in with a token."""
    from ..client import Client

    target = url or server_url()
    me = Client(target, token).get("/whoami")
    data = {"user": me["name"], "token": token}
    if url:
        data["url"] = url
    write_private(home() / "credentials.json", data)
    typer.echo(f"Logged in as {me['name']}" + (f" (projects: {', '.join(me['projects'])})"
                                                 if me["projects"] else ""))


def logout() -> None:
    """Forget the token."""
    (home() / "credentials.json").unlink(missing_ok=True)
    typer.echo("Logged out")
