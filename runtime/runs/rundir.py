"""The run directory: its files, its plan, and whether a new process may continue it.

Its files and record kinds are named in `run_files`.
A directory whose plan has other math is never continued: the refusal names
the fields and happens before anything in it is touched. A plan recorded by an
earlier expspec version is compared input by input (`compare_recorded`), not
byte by byte: equal math continues as an upgrade, which keeps the old plan as
`plan.<n>.json` (the first free n) and records what changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expspec.atomic_files import write_atomic
from expspec.compiler import Plan, PlanError
from expspec.compiler.recorded import PlanComparison, compare_recorded, read_recorded
from expspec.errors import BadInput
from expspec.runtime.runs.run_files import RunFiles
from expspec.spec import SpecError

__all__ = ["RecordedPlan", "RunDir", "RunRefused", "operational_changes", "upgrade_record", "write_json_atomic"]


class RunRefused(BadInput):
    """The run directory belongs to another experiment (or cannot be read)."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    write_atomic(path, [(json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")])


def operational_changes(before: Plan, after: Plan) -> dict[str, list[Any]]:
    """Field -> [old, new] for every resolved field that differs (all operational
    when the trajectory fingerprints are equal)."""
    old, new = before.field_values(), after.field_values()
    return {key: [old.get(key), new.get(key)] for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}


@dataclass(frozen=True)
class RecordedPlan:
    """The plan a run directory holds, as this expspec version reads it, against the new plan."""

    text: bytes
    plan: Plan | None
    """The record as a `Plan`, when it is exactly what its own spec compiles to now;
    None when it comes from another expspec version (continuing it is an upgrade)."""
    problem: str | None
    """Why it is not this version's plan."""
    comparison: PlanComparison
    equivalent: frozenset[str]
    """Trajectory fingerprints proven to be the new plan's math (the new one, the recorded
    one, and those of plans kept by earlier upgrades): a checkpoint carrying one is this run's."""

    @property
    def upgrade(self) -> bool:
        return self.plan is None


@dataclass(frozen=True)
class RunDir(RunFiles):
    """Paths of one run directory (`RunFiles`), and what continuing it takes."""

    def keep_plan(self, text: bytes) -> Path:
        """`text` (the plan an upgrade replaces) kept as the first free `plan.<n>.json`; a copy
        already kept with the same bytes is reused, so a retried upgrade keeps it once."""
        kept = self.kept_plans()
        for path in kept:
            if path.read_bytes() == text:
                return path
        number = int(kept[-1].name.split(".")[1]) + 1 if kept else 1
        path = self.kept_plan(number)
        write_atomic(path, [text])
        return path

    def checkpoints(self, plan: Plan, spec_dir: Path) -> Path:
        """The checkpoint folder the plan names (by default `checkpoints/` in the run directory)."""
        policy = plan.checkpoint
        base = self.root if policy.relative_to == "run_dir" else spec_dir
        return (base / policy.directory).absolute()

    def recorded_plan(self) -> Plan | None:
        """The plan this directory was started with, if any, exactly as this version compiles it."""
        if not self.plan.exists():
            return None
        try:
            return Plan.from_json(self.plan.read_bytes(), file=str(self.plan))
        except SpecError as err:
            raise RunRefused(f"{self.plan}: cannot continue this run: {err.problems[0].message}") from None

    def check_continuable(self, plan: Plan) -> RecordedPlan | None:
        """The recorded plan, read tolerantly and compared with `plan`; refuses (before
        touching anything) a directory whose math differs, naming what differs."""
        try:
            text = self.plan.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise RunRefused(f"{self.plan}: cannot read: {err.strerror or err}") from None
        try:
            comparison = compare_recorded(read_recorded(text, file=str(self.plan)), plan)
        except PlanError as err:
            raise RunRefused(f"{self.plan}: cannot continue this run: {err.problems[0].message}") from None
        if not comparison.same_math:
            raise RunRefused(
                f"{self.root}: holds a run of trajectory {str(comparison.recorded_trajectory)[:12]}, "
                f"this spec has trajectory {plan.fingerprints.trajectory[:12]} ({comparison.describe()}); "
                "use another --run-dir (exp plan --explain shows what changed the math)"
            )
        try:
            loaded, problem = Plan.from_json(text, file=str(self.plan)), None
        except PlanError as err:
            loaded, problem = None, err.problems[0].message
        equivalent = {plan.fingerprints.trajectory, *filter(None, [comparison.recorded_trajectory])}
        equivalent.update(self._equivalent_kept(plan))
        return RecordedPlan(text, loaded, problem, comparison, frozenset(equivalent))

    def _equivalent_kept(self, plan: Plan) -> set[str]:
        """Trajectory fingerprints of kept plans whose math is `plan`'s, each compared anew."""
        found = set()
        for path in self.kept_plans():
            try:
                comparison = compare_recorded(read_recorded(path.read_bytes(), file=str(path)), plan)
            except (OSError, PlanError):
                continue
            if comparison.same_math and comparison.recorded_trajectory:
                found.add(comparison.recorded_trajectory)
        return found


def upgrade_record(recorded: RecordedPlan, plan: Plan, kept: Path, versions: tuple[Any, str]) -> dict[str, Any]:
    """The `upgrade` event's fields: what another expspec version's plan lacked or held
    differently, the versions and plan formats on both sides, and where the old plan is kept."""
    comparison = recorded.comparison
    return {
        "from": {
            "expspec": versions[0],
            "format": comparison.recorded_format,
            "trajectory": comparison.recorded_trajectory,
        },
        "to": {"expspec": versions[1], "format": plan.format, "trajectory": plan.fingerprints.trajectory},
        "reason": recorded.problem,
        "added": comparison.added,
        "removed": list(comparison.removed),
        "changes": {c.key: [c.a, c.b] for c in comparison.operational},
        "parts": comparison.parts,
        "kept": kept.name,
    }
