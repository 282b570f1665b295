"""Comparing two plans: every changed field, and whether it changes the results.

Equal trajectory fingerprints are the contract's definition of "the results are
the same", so the verdict is the fingerprints' and the field list explains it.
A trajectory fingerprint also covers what no spec field holds (the seed tree,
the determinism settings, the modules custom code runs); those are listed when they
differ, so a verdict of "differ" always comes with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from expspec.spec import FieldClass

from .plan import Plan, PlanError

__all__ = ["Change", "PlanDiff", "diff_plans", "read_plan"]

_ABSENT: Any = object()


@dataclass(frozen=True)
class Change:
    """One key whose value differs between plan A and plan B."""

    key: str
    """A dotted spec field, or `plan.seeds.<stream>`, `plan.determinism.<part>`,
    `plan.sources.<module>` (a local module custom code runs) and
    `plan.fingerprints.trajectory` for what no field holds."""
    a: Any
    b: Any
    cls: FieldClass
    only_in: Literal["a", "b"] | None = None
    """Set when the key exists in one plan only (a table whose `kind` changed)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"key": self.key, "a": self.a, "b": self.b, "class": self.cls}
        if self.only_in:
            out["only_in"] = self.only_in
        return out


@dataclass(frozen=True)
class PlanDiff:
    trajectory_equal: bool
    changes: tuple[Change, ...]
    """Trajectory changes first, then operational ones, each in declaration order."""

    @property
    def trajectory_changes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.cls == "trajectory")

    @property
    def operational_changes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.cls == "operational")


def _pairs(prefix: str, a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Trajectory changes of two flat mappings (seed streams, source hashes)."""
    out = []
    for key in [*a, *(k for k in b if k not in a)]:
        left, right = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if left != right:
            out.append(_change(f"{prefix}{key}", left, right, "trajectory"))
    return out


def _change(key: str, a: Any, b: Any, cls: FieldClass) -> Change:
    only = "b" if a is _ABSENT else "a" if b is _ABSENT else None
    return Change(key, None if a is _ABSENT else a, None if b is _ABSENT else b, cls, only)


def _display_order(paths: list[str]) -> list[str]:
    """Declaration order, except that a table's `kind` comes first: it decides
    what the other keys of the table mean (as `exp plan --explain` shows them)."""
    rank = {p: float(i) for i, p in enumerate(paths)}
    for path in paths:
        table, _, key = path.rpartition(".")
        if key == "kind" and table:
            rank[path] = min(rank[p] for p in paths if p.startswith(table + ".")) - 0.5
    return sorted(paths, key=rank.__getitem__)


def _field_changes(a: Plan, b: Plan) -> list[Change]:
    left, right = a.field_values(), b.field_values()
    out = []
    for key in _display_order([*a.fields, *(k for k in b.fields if k not in a.fields)]):
        one, two = left.get(key, _ABSENT), right.get(key, _ABSENT)
        if one == two:
            continue
        # A field both plans have is classed alike unless the plans come from
        # different expspec versions; then the stricter class is the honest one.
        classes = {a.fields.get(key), b.fields.get(key)} - {None}
        out.append(_change(key, one, two, "trajectory" if "trajectory" in classes else "operational"))
    return out


def diff_plans(a: Plan, b: Plan) -> PlanDiff:
    """What differs from plan `a` to plan `b`, each change classed."""
    fields = _field_changes(a, b)
    equal = a.fingerprints.trajectory == b.fingerprints.trajectory
    # Custom sources are inputs no field holds: an edited module is always a reason.
    extra = _pairs("plan.sources.", a.fingerprints.sources, b.fingerprints.sources)
    if not equal and not any(c.cls == "trajectory" for c in fields + extra):
        # The seed tree and determinism settings follow from fields; they speak
        # only when no field does (plans compiled by another expspec version).
        extra += _pairs("plan.seeds.", a.seeds, b.seeds)
        extra += _pairs("plan.determinism.", a.determinism.trajectory_part(), b.determinism.trajectory_part())
        if a.format != b.format:
            extra.append(Change("plan.format", a.format, b.format, "trajectory"))
    if not equal and not any(c.cls == "trajectory" for c in fields + extra):
        extra.append(
            Change("plan.fingerprints.trajectory", a.fingerprints.trajectory, b.fingerprints.trajectory, "trajectory")
        )
    ordered = [c for c in fields + extra if c.cls == "trajectory"] + [c for c in fields if c.cls == "operational"]
    return PlanDiff(equal, tuple(ordered))


def read_plan(text: str | bytes, *, file: str) -> tuple[Plan, str | None]:
    """A recorded plan to compare, and a note when it is not what its own spec compiles to.

    A run directory made before this expspec version added a spec field no
    longer compiles to the same plan, and `Plan.from_json` refuses it; a diff
    compares it as recorded instead (the new field shows up as a change) and
    says so. Only a file that is no plan at all raises `PlanError`.
    """
    try:
        return Plan.from_json(text, file=file), None
    except PlanError as err:
        try:
            plan = Plan.model_validate_json(text)
        except ValueError:
            raise err from None
        return plan, f"{file}: {err.problems[0].message}; compared as recorded"
