"""A plan recorded by this or an earlier expspec version, compared with a new plan by what decides the math.

A run directory keeps the plan it was started with. A later expspec may add
spec fields (with defaults), add parts to the plan, or change how the
fingerprint is computed: the recorded plan then no longer loads as a `Plan`, or
no longer equals what its spec compiles to now, although the run's math is
unchanged. So the record is read as plain JSON and compared input by input
with the new plan: every field either version classes as trajectory, the seed
tree, the determinism settings and the custom sources. Equal inputs are the
same math, whatever the fingerprints say; a field the record lacks must hold,
in the new plan, the value this version gives the recorded spec (its default),
else it is a change. Nothing here trusts the recorded fingerprint alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from expspec.spec import Experiment, Problem, SpecError

from .compile import assemble, resolve_spec
from .diff import Change
from .plan import Plan, PlanError, PlanSource

__all__ = ["PlanComparison", "compare_recorded", "read_recorded"]

_ABSENT: Any = object()

_PARTS = ("checkpoint", "throttle", "mesh", "determinism", "distributions")
"""Plan parts besides the spec, its classes, fingerprints and provenance."""


@dataclass(frozen=True)
class PlanComparison:
    """What separates a recorded plan from a new one."""

    trajectory: tuple[Change, ...]
    """Changes of the math, named: refused."""
    operational: tuple[Change, ...]
    """Fields both plans hold, changed, that do not change the math."""
    added: dict[str, Any]
    """Dotted fields (and `seeds.<stream>`) the recorded plan lacks -> their value now."""
    removed: tuple[str, ...]
    """Operational fields the recorded plan holds that this version no longer has."""
    parts: dict[str, list[str]]
    """Plan parts "added", "removed" or "changed" besides the spec (`mesh`, `throttle`, ...)."""
    recorded_format: Any
    recorded_trajectory: str | None

    @property
    def same_math(self) -> bool:
        return not self.trajectory

    def describe(self, limit: int = 4) -> str:
        """The trajectory changes in one line: `optimizer.learning_rate 0.001 -> 0.5, ...`."""
        shown = [f"{c.key} {_show(c.a, c.only_in == 'b')} -> {_show(c.b, c.only_in == 'a')}" for c in self.trajectory]
        more = len(shown) - limit
        return ", ".join(shown[:limit]) + (f" and {more} more" if more > 0 else "")


def _show(value: Any, absent: bool) -> str:
    return "(absent)" if absent else json.dumps(value, sort_keys=True)[:60]


def read_recorded(text: str | bytes, *, file: str) -> dict[str, Any]:
    """A recorded plan as JSON data; raises `PlanError` naming `file` when it is no JSON object."""
    try:
        data = json.loads(text)
    except ValueError as err:  # UnicodeDecodeError included
        raise PlanError([Problem(file, None, "", f"not valid JSON, truncated or damaged ({err})")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise PlanError([Problem(file, None, "", "not a plan: no `spec` table")])
    return data


def _lookup(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return _ABSENT
        data = data[key]
    return data


def _without(data: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of nested `data` with the dotted `paths` removed."""
    out = json.loads(json.dumps(data))
    for path in paths:
        *tables, leaf = path.split(".")
        table = out
        for key in tables:
            table = table.get(key) if isinstance(table, dict) else None
        if isinstance(table, dict):
            table.pop(leaf, None)
    return out


def _as_now(spec: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """The recorded spec as this version reads it (new fields at their defaults), as
    field values; empty when this version cannot read it."""
    try:
        experiment = resolve_spec(Experiment.model_validate(spec))
    except (ValidationError, SpecError, ValueError, TypeError):  # then no added field is proven a default
        return {}
    return assemble(experiment, PlanSource(), sources).field_values()


def _flat(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


def _pairs(prefix: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if a != b:
            only = "b" if a is _ABSENT else "a" if b is _ABSENT else None
            out.append(
                Change(f"{prefix}{key}", None if only == "b" else a, None if only == "a" else b, "trajectory", only)
            )
    return out


def _determinism(data: Any) -> dict[str, Any]:
    """The settings that change the bits, flattened: `jax_config.<name>`, `xla_flags`, `env.<name>`."""
    data = _flat(data)
    out: dict[str, Any] = {f"jax_config.{k}": v for k, v in _flat(data.get("jax_config")).items()}
    out.update({f"env.{k}": v for k, v in _flat(data.get("env")).items()})
    if "xla_flags" in data:
        out["xla_flags"] = list(data["xla_flags"] or ())
    return out


def compare_recorded(recorded: dict[str, Any], plan: Plan) -> PlanComparison:
    """Compare a recorded plan (JSON data, any version) with `plan`, input by input."""
    old_spec = _flat(recorded.get("spec"))
    old_classes = {k: v for k, v in _flat(recorded.get("fields")).items() if isinstance(k, str)}
    new_values, new_classes = plan.field_values(), plan.fields
    paths = [*new_classes, *(p for p in old_classes if p not in new_classes)]
    gone = [p for p in old_classes if p not in new_classes]
    old_sources = _flat(_flat(recorded.get("fingerprints")).get("sources"))
    defaults: list[dict[str, Any]] = []  # what this version makes of the recorded spec, read once if needed

    trajectory: list[Change] = []
    operational: list[Change] = []
    added: dict[str, Any] = {}
    removed: list[str] = []
    for path in paths:
        cls = "trajectory" if "trajectory" in (old_classes.get(path), new_classes.get(path)) else "operational"
        old, new = _lookup(old_spec, path), new_values.get(path, _ABSENT)
        if old is _ABSENT and new is _ABSENT:
            continue
        if new is _ABSENT:  # a field this version no longer has (or a table whose kind changed)
            if cls == "trajectory":
                trajectory.append(Change(path, old, None, "trajectory", "a"))
            else:
                removed.append(path)
        elif old is _ABSENT:  # a field the recorded version did not have
            if cls == "operational":
                added[path] = new
                continue
            if not defaults:
                defaults.append(_as_now(_without(old_spec, gone), old_sources))
            if defaults[0].get(path, _ABSENT) == new:
                added[path] = new
            else:
                trajectory.append(Change(path, None, new, "trajectory", "b"))
        elif old != new:
            (trajectory if cls == "trajectory" else operational).append(Change(path, old, new, cls))

    # Seeds are derived by hashing each stream's name, so a new stream changes no other one.
    old_seeds, new_seeds = _flat(recorded.get("seeds")), plan.seeds
    for change in _pairs("seeds.", old_seeds, new_seeds):
        if change.only_in == "b":
            added[change.key] = change.b
        else:
            trajectory.append(change)
    trajectory += _pairs(
        "determinism.", _determinism(recorded.get("determinism")), _determinism(plan.determinism.trajectory_part())
    )
    trajectory += _pairs("sources.", old_sources, plan.fingerprints.sources)
    old_files = _flat(_flat(recorded.get("fingerprints")).get("files"))
    trajectory += _pairs("files.", old_files, plan.fingerprints.files)

    new_dump = plan.to_dict()
    parts: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    for part in _PARTS:
        if part not in recorded:
            parts["added"].append(part)
        elif recorded[part] != new_dump[part]:
            parts["changed"].append(part)
    parts["removed"] = sorted(k for k in recorded if k not in new_dump)
    fingerprint = _flat(recorded.get("fingerprints")).get("trajectory")
    return PlanComparison(
        trajectory=tuple(trajectory),
        operational=tuple(operational),
        added=added,
        removed=tuple(removed),
        parts={k: v for k, v in parts.items() if v},
        recorded_format=recorded.get("format"),
        recorded_trajectory=fingerprint if isinstance(fingerprint, str) else None,
    )
