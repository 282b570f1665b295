"""`exp plan`: compile a spec and show the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from expspec.exit_codes import ExitCode

from .console import echo, fail_invalid
from .options import JSON, OVERRIDES, SPEC, Param

if TYPE_CHECKING:
    from expspec.compiler import Plan

HELP = """Compile a spec into its frozen, fingerprinted plan.

Overrides are dotted TOML assignments applied after `extends`.

Example: exp plan examples/digits_mlp.toml train.steps=100 --explain"""


PARAMS = (
    SPEC,
    OVERRIDES,
    JSON,
    Param(
        "explain",
        bool,
        "Show every field with its class, the seed tree and each parameter's sharding.",
        flag="--explain",
        default=False,
    ),
    Param(
        "devices", int | None, "Lay the mesh out on N devices (resolves -1 axes).", flag="--devices", metavar="N", min=1
    ),
)


def command(
    spec: Path,
    overrides: list[str] | None = None,
    as_json: bool = False,
    explain: bool = False,
    devices: int | None = None,
) -> int:
    """Exit code OK (a bad spec or mesh exits BAD_INPUT from `fail_invalid`)."""
    from expspec.compiler import plan_spec
    from expspec.spec import SpecError

    try:
        plan = plan_spec(spec, overrides or [])
    except SpecError as err:
        fail_invalid(err)
    if devices is not None:
        _check_mesh(plan, spec, devices)
    if as_json:
        echo(json.dumps(plan.to_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    if explain or not as_json:
        from .render import render_plan

        # Relative data paths resolve against the spec's folder, as `exp run` resolves them.
        render_plan(plan, explain=explain, spec_dir=Path(spec).resolve().parent, devices=devices)
    return ExitCode.OK


def _check_mesh(plan: Plan, spec: Path, devices: int) -> None:
    """What a run on `devices` devices would refuse before it starts (a mesh that
    does not fit, a batch that does not split over it) is a spec problem: one line, exit 2."""
    from expspec.compiler.mesh import MeshError, check_batch, resolve_mesh
    from expspec.spec import Problem, SpecError

    try:
        check_batch(plan.spec.data.batch_size, resolve_mesh(plan.mesh, devices))
    except MeshError as err:
        fail_invalid(SpecError([Problem(str(spec), None, err.key, f"{err} (--devices {devices})")]))
