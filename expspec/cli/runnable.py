"""The plan of a spec about to run: compiled, and its custom imports allowed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .console import fail_invalid

if TYPE_CHECKING:
    from expspec.compiler import Plan
    from expspec.spec import Problem


def import_refusals(spec: Path, plan: Plan, allowed: Sequence[str]) -> list[Problem]:
    """One problem per custom target of `plan` whose import was not allowed
    (importing it would run its code)."""
    from expspec.spec import Problem, custom_targets
    from expspec.spec.targets import import_refusal, is_allowed

    return [
        Problem(str(spec), None, key, import_refusal(target))
        for key, target in custom_targets(plan.spec).items()
        if not is_allowed(target, tuple(allowed))
    ]


def runnable_plan(spec: Path, overrides: Sequence[str], allowed: Sequence[str]) -> Plan:
    """The compiled plan; exit 2 with one line per problem for a bad spec or a custom
    target whose import was not allowed."""
    from expspec.compiler import plan_spec
    from expspec.spec import SpecError

    try:
        plan = plan_spec(spec, list(overrides))
        refused = import_refusals(spec, plan, allowed)
        if refused:
            raise SpecError(refused)
    except SpecError as err:
        fail_invalid(err)
    return plan
