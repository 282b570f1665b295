"""`exp lock`: record the bits of each spec's first steps into a lockfile."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from .console import EXIT_INVALID, say
from .options import AllowImportOpt

HELP = """Record each spec's trajectory fingerprint, environment class and bits into a lockfile.

`exp audit --lock exp.lock` then reruns them and tells a changed trajectory from a regression.

Example: exp lock examples/digits_mlp.toml -o exp.lock"""


def command(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC...", help="Spec files to lock.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="The lockfile to write.")] = Path("exp.lock"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="Steps recorded per spec.")] = 20,
    allow_import: AllowImportOpt = None,
) -> None:
    from exp.audit.checks import SpecTarget
    from exp.audit.lockfile import record_lock
    from exp.audit.processes import RunError
    from exp.spec import SpecError

    workdir = Path(tempfile.mkdtemp(prefix="exp-lock-"))
    targets = [SpecTarget(str(spec), (), tuple(allow_import or ())) for spec in specs]
    try:
        document = record_lock(targets, steps, output, workdir)
    except (RunError, SpecError) as err:
        say(f"exp lock: {str(err).splitlines()[0]}")
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    output.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for entry in document["entries"]:
        say(f"locked {entry['spec']}  {entry['name']}  {entry['steps']} steps  trajectory {entry['trajectory'][:12]}")
    say(f"wrote {output}")
