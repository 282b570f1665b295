"""`exp diff`: what differs between two experiments, and whether it changes the results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expspec.exit_codes import ExitCode

from .console import echo, print_problems, say
from .options import JSON, Param

if TYPE_CHECKING:
    from expspec.compiler import Plan

HELP = """Compare two experiments: every changed field, labelled trajectory or operational.

A and B are each a spec file, a plan JSON (`exp plan --json`) or a run directory;
two run directories also show how their environment classes differ.
Exit 0 when the trajectories are equal, 1 when they differ, 2 bad input.

Example: exp diff examples/digits_mlp.toml runs/digits-mlp"""


PARAMS = (
    Param("a", Path, "Spec, plan JSON or run directory.", metavar="A", required=True, show_default=False),
    Param("b", Path, "Spec, plan JSON or run directory.", metavar="B", required=True, show_default=False),
    JSON,
)


@dataclass(frozen=True)
class Side:
    """One of the two things compared."""

    path: Path
    kind: str
    """spec, plan or run dir."""
    plan: Plan


def _read_plan(path: Path, file: Path) -> Plan:
    from expspec.compiler import read_plan

    plan, note = read_plan(file.read_bytes(), file=str(file))
    if note:
        say(note)
    return plan


def _load(path: Path) -> Side | None:
    """The plan behind `path`, or None after printing why there is none."""
    from expspec.compiler import plan_spec
    from expspec.runtime.runs.run_files import RunFiles
    from expspec.spec import SpecError

    try:
        if path.is_dir():
            plan = RunFiles(path).plan
            if not plan.is_file():
                say(f"{path}: not a run directory (no {plan.name}), nor a spec or plan file")
                return None
            return Side(path, "run dir", _read_plan(path, plan))
        if not path.exists():
            say(f"{path}: no such file or directory")
            return None
        # A plan is a JSON object; a TOML document cannot start with `{`.
        if path.read_bytes().lstrip().startswith(b"{"):
            return Side(path, "plan", _read_plan(path, path))
        return Side(path, "spec", plan_spec(path))
    except SpecError as err:
        print_problems(err)
    except OSError as err:
        say(f"{path}: cannot read: {err.strerror or err}")
    return None


def _environment(a: Side, b: Side) -> dict[str, list[Any]] | None:
    """Environment-class fields that differ ({} none); None unless both sides recorded one."""
    from expspec.audit.localize import recorded_environment

    if a.kind != "run dir" or b.kind != "run dir":
        return None
    left, right = recorded_environment(a.path), recorded_environment(b.path)
    if left is None or right is None:
        return None
    return {k: [left.get(k), right.get(k)] for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)}


def command(a: Path, b: Path, as_json: bool = False) -> int:
    """Exit code 0 when the trajectories are equal, 1 when they differ, 2 bad input."""
    from expspec.compiler import diff_plans

    sides = [_load(a), _load(b)]
    if sides[0] is None or sides[1] is None:
        return ExitCode.BAD_INPUT
    left, right = sides
    result = diff_plans(left.plan, right.plan)
    environment = _environment(left, right)
    if as_json:
        document = {
            "trajectory_equal": result.trajectory_equal,
            "changes": [c.to_dict() for c in result.changes],
            "environment": environment,
        }
        echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        from .render_diff import render_diff

        render_diff(left, right, result, environment)
    return ExitCode.OK if result.trajectory_equal else ExitCode.CHECK_FAILED
