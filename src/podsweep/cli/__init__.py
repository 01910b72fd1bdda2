"""The ``podsweep`` command: one module per verb, printers in :mod:`.printers`."""

from __future__ import annotations

import sys

import typer

from ..errors import PodsweepError, disk_full, is_disk_full
from . import auth, common, hpo, jobs, project, submit, up, user

app = typer.Typer(
    name="podsweep",
    help="Hyperparameter sweeps for research teams sharing GPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain one-line usage errors, as click prints them
)
app.command()(up.up)
app.command()(up.down)
app.command()(up.status)
app.command()(auth.login)
app.command()(auth.logout)
app.add_typer(project.app, name="project")
app.add_typer(user.app, name="user")
app.command("submit")(submit.submit)
app.command("render")(submit.render)
app.command("list")(jobs.list_)
app.command()(jobs.get)
app.command()(jobs.logs)
app.command()(jobs.delete)
app.add_typer(hpo.app, name="hpo")


@app.command()
def version() -> None:
    """Print podsweep's version."""
    from .. import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point: podsweep's errors become one line on stderr and a non-zero exit code.

    Usage errors (unknown flags, bad values) are typer's, printed by it with exit code 2.
    """
    try:
        try:
            app()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # writing the home's files (podsweep up's config, login's credentials)
            raise disk_full(common.home()) from None
    except Exception as exc:
        if not ours(exc):
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(getattr(exc, "exit_code", 1))


def ours(exc: BaseException) -> bool:
    """A PodsweepError, or an HPOError of the HPO library that ``podsweep hpo`` reads with.

    The library is not imported to ask: it is imported by the commands that use it, and an
    HPOError exists only once one of them has done so.
    """
    if isinstance(exc, PodsweepError):
        return True
    hpo = sys.modules.get("podsweep.hpo")
    return hpo is not None and isinstance(exc, hpo.HPOError)
