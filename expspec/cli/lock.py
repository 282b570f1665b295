"""`exp lock`: record the bits of each spec's first steps into a lockfile, with its pip constraints."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from expspec.exit_codes import ExitCode

from .console import say
from .exit_status import stopped_exit_code
from .options import AllowImportOpt

HELP = """Record each spec's trajectory fingerprint, inputs, environment class and bits into a lockfile.

Next to it goes a pip constraints file with the locked package versions
(exp.lock -> exp.constraints.txt); install with it to reproduce the bits.
`exp audit --lock exp.lock` then reruns the specs and names a verdict for each:
reproduced, trajectory changed, input changed, environment changed or regression.

\b
Example: exp lock examples/digits_mlp.toml -o exp.lock
Example: exp lock --constraints exp.lock"""


def _fail(message: str) -> typer.Exit:
    say(f"exp lock: {message.splitlines()[0]}")
    return typer.Exit(ExitCode.BAD_INPUT)


def _print_constraints(lock: Path) -> None:
    from expspec.audit.lockfile import lock_constraints, read_lock
    from expspec.audit.processes import RunError

    try:
        sys.stdout.write(lock_constraints(read_lock(lock), lock))
    except RunError as err:
        raise _fail(str(err)) from None


def command(
    specs: Annotated[
        list[Path] | None, typer.Argument(metavar="SPEC...", help="Spec files to lock.", show_default=False)
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="The lockfile to write.")] = Path("exp.lock"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="Steps recorded per spec.")] = 20,
    allow_import: AllowImportOpt = None,
    constraints: Annotated[
        Path | None,
        typer.Option(
            "--constraints", metavar="LOCKFILE", help="Print the pip constraints of an existing lockfile and exit."
        ),
    ] = None,
) -> None:
    if constraints is not None:
        if specs:
            raise _fail("give spec files to record a lock, or --constraints LOCKFILE to print one's pins; not both")
        return _print_constraints(constraints)
    if not specs:
        raise _fail("give the spec files to lock (or --constraints LOCKFILE)")
    from expspec.audit.checks import SpecTarget
    from expspec.audit.children import StoppedBySignal, stopped_on_signal
    from expspec.audit.constraints import constraints_path
    from expspec.audit.lockfile import lock_constraints, record_lock
    from expspec.audit.processes import RunError
    from expspec.spec import SpecError

    workdir = Path(tempfile.mkdtemp(prefix="exp-lock-"))
    targets = [SpecTarget(str(spec), (), tuple(allow_import or ())) for spec in specs]
    try:
        with stopped_on_signal():  # a SIGTERM or SIGINT stops and reaps every run first
            document = record_lock(targets, steps, output, workdir)
        pins = lock_constraints(document, output)
    except (RunError, SpecError) as err:
        raise _fail(str(err)) from None
    except StoppedBySignal as stop:
        say(f"exp lock: stopped by {stop.name}; its runs were stopped and nothing was written")
        raise typer.Exit(stopped_exit_code(stop.signum)) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    output.write_text(document.to_json(), encoding="utf-8")
    constraints_path(output).write_text(pins, encoding="utf-8")
    for entry in document.entries:
        say(f"locked {entry.spec}  {entry.name}  {entry.steps} steps  trajectory {entry.trajectory[:12]}")
    say(f"wrote {output} and {constraints_path(output)}")
