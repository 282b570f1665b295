"""Arguments and options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[Path, typer.Argument(metavar="SPEC", help="Spec file.", show_default=False)]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="[KEY=VALUE...]", help="Overrides, e.g. train.steps=100.", show_default=False),
]
AllowImportOpt = Annotated[
    list[str] | None,
    typer.Option("--allow-import", metavar="PREFIX", help="Allow importing custom targets under PREFIX (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
