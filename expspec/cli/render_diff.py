"""Rendering `exp diff` for people: the two sides, a table of changes, the verdict."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from .console import stderr

if TYPE_CHECKING:
    from expspec.compiler import PlanDiff

    from .diff import Side

_CLASS_STYLE = {"trajectory": "magenta", "operational": "cyan"}


def _text(value: Any, present: bool = True) -> str:
    return json.dumps(value, ensure_ascii=False) if present else "(absent)"


def _changes_table(result: PlanDiff) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("key", "A", "B", "class"):
        table.add_column(column, overflow="fold")
    for change in result.changes:
        table.add_row(
            change.key,
            _text(change.a, change.only_in != "b"),
            _text(change.b, change.only_in != "a"),
            Text(change.cls, style=_CLASS_STYLE[change.cls]),
        )
    return table


def _environment_rows(environment: dict[str, list[Any]]) -> list[tuple[str, str, str]]:
    """One row per differing value; tables (packages, mesh) show only their differing keys."""
    rows = []
    for key, (a, b) in environment.items():
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    rows.append((f"{key}.{sub}", _text(a.get(sub), sub in a), _text(b.get(sub), sub in b)))
        else:
            rows.append((key, _text(a), _text(b)))
    return rows


def _verdict(result: PlanDiff, environment: dict[str, list[Any]] | None) -> str:
    trajectory, operational = len(result.trajectory_changes), len(result.operational_changes)
    if not result.trajectory_equal:
        return f"trajectories differ ({trajectory} trajectory, {operational} operational): the results will differ"
    what = f"{operational} operational change{'s' * (operational != 1)}" if result.changes else "no field differs"
    if environment:
        return (
            f"same trajectory ({what}) in another environment class: bitwise equality is promised within one class only"
        )
    return f"same trajectory ({what}): the results will be the same"


def render_diff(a: Side, b: Side, result: PlanDiff, environment: dict[str, list[Any]] | None) -> None:
    """Print the comparison of `a` and `b` on stderr."""
    console = stderr()
    width = max(len(str(a.path)), len(str(b.path)))
    for label, side in (("A", a), ("B", b)):
        plan = side.plan
        console.print(
            f"{label}  {side.kind:<7}  {str(side.path):<{width}}  {plan.name}  "
            f"trajectory {plan.fingerprints.trajectory[:12]}",
            markup=False,
        )
    console.print()
    if result.changes:
        console.print(_changes_table(result))
        console.print()
    if a.kind == "run dir" and b.kind == "run dir":
        if environment is None:
            console.print("environment: not recorded in both run directories (env.json)", markup=False)
        elif environment:
            table = Table(title="Environment class", title_justify="left", show_edge=False, pad_edge=False)
            for column in ("key", "A", "B"):
                table.add_column(column, overflow="fold")
            for row in _environment_rows(environment):
                table.add_row(*row)
            console.print(table)
        else:
            console.print("environment: same class", markup=False)
        console.print()
    style = "green" if result.trajectory_equal else "yellow"
    console.print(_verdict(result, environment), markup=False, style=style)
