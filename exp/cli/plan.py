"""`exp plan`: compile a spec and show the plan."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .console import fail_invalid
from .options import JsonOpt, OverridesArg, SpecArg

HELP = """Compile a spec into its frozen, fingerprinted plan.

Overrides are dotted TOML assignments applied after `extends`.

Example: exp plan examples/digits_mlp.toml train.steps=100 --explain"""


def command(
    spec: SpecArg,
    overrides: OverridesArg = None,
    as_json: JsonOpt = False,
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
