"""The typer application and its global options."""

from __future__ import annotations

from typing import Annotated

import typer

from exp import __version__

from . import audit, launch, lock, plan, run, schema, validate

app = typer.Typer(
    name="exp",
    help="Declarative, hashed and verified-reproducible JAX experiments.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"expspec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Declarative, hashed and verified-reproducible JAX experiments."""


app.command("run", help=run.HELP)(run.command)
app.command("launch", help=launch.HELP)(launch.command)
app.command("validate", help=validate.HELP)(validate.command)
app.command("plan", help=plan.HELP)(plan.command)
app.command("schema", help=schema.HELP)(schema.command)
app.command("audit", help=audit.HELP)(audit.command)
app.command("lock", help=lock.HELP)(lock.command)
