"""`exp validate`: check spec files without running anything."""

from __future__ import annotations

from pathlib import Path

from expspec.exit_codes import ExitCode

from .console import print_problems, say
from .options import ALLOW_IMPORT, Param

HELP = """Check spec files without running anything.

Syntax, types, ranges, cross-field rules and `extends` chains are checked.

Custom targets are located but not imported unless --allow-import covers them.

Example: exp validate examples/*.toml"""


PARAMS = (
    Param("specs", list[Path], "Spec files to check.", metavar="SPEC...", required=True, show_default=False),
    ALLOW_IMPORT,
)


def command(specs: list[Path], allow_import: list[str] | None = None) -> int:
    """Exit code 0 when every spec is valid, else 2."""
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
    return ExitCode.BAD_INPUT if failed else ExitCode.OK
