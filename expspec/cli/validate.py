"""`exp validate`: check spec files without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from expspec.exit_codes import ExitCode

from .console import print_problems, say
from .options import AllowImportOpt

HELP = """Check spec files without running anything.

Syntax, types, ranges, cross-field rules and `extends` chains are checked.

Custom targets are located but not imported unless --allow-import covers them.

Example: exp validate examples/*.toml"""


def command(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC...", help="Spec files to check.", show_default=False)],
    allow_import: AllowImportOpt = None,
) -> None:
    from expspec.compiler import plan_spec
    from expspec.spec import SpecError, check_targets

    failed = False
    for spec in specs:
        try:
            plan = plan_spec(spec)
            notes = check_targets(plan.spec, allow_import or [], [Path(spec).resolve().parent], str(spec))
        except SpecError as err:
            failed = True
            print_problems(err)
            continue
        say(f"ok  {spec}  {plan.name}  trajectory {plan.fingerprints.trajectory[:12]}")
        for note in notes:
            say(f"    {note}")
    if failed:
        raise typer.Exit(ExitCode.BAD_INPUT)
