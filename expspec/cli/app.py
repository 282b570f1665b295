"""The typer application and its global options."""

from __future__ import annotations

from typing import Annotated

import typer

from expspec import __version__

from . import audit, diff, export, launch, lock, plan, report, run, runs, sample, schema, validate
from .help import ExamplesGroup
from .options import typer_command

app = typer.Typer(
    name="exp",
    cls=ExamplesGroup,  # lists each command with its example
    help="Declarative, hashed and verified-reproducible JAX experiments.",
    epilog="exp COMMAND --help shows a command's options; exp --install-completion adds tab completion to your shell.",
    no_args_is_help=True,
    # `exp --install-completion` / `--show-completion`; completing asks only the
    # command tree, which imports no JAX.
    add_completion=True,
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
app.command("validate", help=validate.HELP)(typer_command(validate.command, validate.PARAMS))
app.command("plan", help=plan.HELP)(typer_command(plan.command, plan.PARAMS))
app.command("schema", help=schema.HELP)(schema.command)
app.command("audit", help=audit.HELP)(audit.command)
app.command("lock", help=lock.HELP)(lock.command)
app.command("diff", help=diff.HELP)(typer_command(diff.command, diff.PARAMS))
app.command("runs", help=runs.HELP)(typer_command(runs.command, runs.PARAMS))
app.command("report", help=report.HELP)(report.command)
app.command("sample", help=sample.HELP)(sample.command)
app.command("export", help=export.HELP)(export.command)
