"""``podsweep login`` and ``logout``: the CLI's credentials (readable by the user alone).

The token is never an argument: every user of the machine sees a process's arguments (in
``ps``, in ``/proc/PID/cmdline``). ``login`` reads it from standard input (``--token -``),
from ``$PODSWEEP_TOKEN``, or from a prompt that does not echo it.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..homedir import secure_home, write_private
from .common import home, server_url

HOW = ("pipe it in (podsweep login --token - < token-file), set PODSWEEP_TOKEN, or run "
       "podsweep login in a terminal and paste it at the prompt")


def read_token(option: str | None) -> str:
    """The token from stdin (``--token -``), the environment, or a prompt (a terminal)."""
    if option is not None and option != "-":
        raise UsageError(f"a token on the command line shows in ps to every user; {HOW}")
    if option == "-":
        token = sys.stdin.readline().strip()
    elif os.environ.get("PODSWEEP_TOKEN"):
        token = os.environ["PODSWEEP_TOKEN"].strip()
    elif sys.stdin.isatty():
        import getpass

        token = getpass.getpass("Token (from podsweep user create): ").strip()
    else:
        raise UsageError(f"no token: {HOW}")
    if not token:
        raise UsageError(f"the token is empty; {HOW}")
    return token


def login(token: Annotated[Optional[str], typer.Option(
              help="- to read the token from standard input (default: $PODSWEEP_TOKEN, "
                   "else a prompt)")] = None,
          url: Annotated[Optional[str], typer.Option(
              help="the control plane's URL (default: the local one)")] = None) -> None:
    """Log in with the token printed by podsweep user create."""
    secret = read_token(token)
    target = url or server_url()
    from ..client import Client  # httpx: once there is something to ask

    me = Client(target, secret).get("/whoami")
    data = {"user": me["name"], "token": secret}
    if url:
        data["url"] = url
    secure_home(home())        # a first login may be this home's first file
    write_private(home() / "credentials.json", data)
    typer.echo(f"Logged in as {me['name']}" + (f" (projects: {', '.join(me['projects'])})"
                                                 if me["projects"] else ""))


def logout() -> None:
    """Forget the token."""
    (home() / "credentials.json").unlink(missing_ok=True)
    typer.echo("Logged out")
