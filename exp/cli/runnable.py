"""The plan of a spec about to run: compiled, and its custom imports allowed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .console import fail_invalid

if TYPE_CHECKING:
    from exp.compiler import Plan


def runnable_plan(spec: Path, overrides: Sequence[str], allowed: Sequence[str]) -> Plan:
    """The compiled plan; exit 2 with one line per problem for a bad spec or a custom
    target whose import was not allowed (importing it would run its code)."""
    from exp.compiler import plan_spec
    from exp.spec import Problem, SpecError, custom_targets
    from exp.spec.targets import is_allowed

    try:
        plan = plan_spec(spec, list(overrides))
        refused = [
            Problem(
                str(spec),
                None,
                key,
                f"importing '{target}' runs its code; allow it with --allow-import "
                f"{target.split('.')[0].split(':')[0]}",
            )
            for key, target in custom_targets(plan.spec).items()
            if not is_allowed(target, tuple(allowed))
        ]
        if refused:
            raise SpecError(refused)
    except SpecError as err:
        fail_invalid(err)
    return plan
