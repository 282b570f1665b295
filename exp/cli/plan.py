"""`exp plan`: compile a spec and show the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .console import fail_invalid

HELP = """Compile a spec into its frozen, fingerprinted plan.

Overrides are dotted TOML assignments applied after `extends`.

Example: exp plan examples/digits_mlp.toml train.steps=100 --explain"""


def command(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec file.", show_default=False)],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(metavar="[KEY=VALUE...]", help="Overrides, e.g. train.steps=100.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every field with its class, and the seed tree.")
    ] = False,
) -> None:
    from exp.compiler import plan_spec
    from exp.spec import SpecError

    try:
        plan = plan_spec(spec, overrides or [])
    except SpecError as err:
        fail_invalid(err)
    if as_json:
        typer.echo(json.dumps(plan.to_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    if explain or not as_json:
        from .render import render_plan

        render_plan(plan, explain=explain)
