"""The judge's lock part: the five verdicts of a lock check, each with its own `kind`.

reproduced; trajectory_changed (re-record); input_changed (which input, both
fingerprints); environment_changed (which packages or settings, both values,
and how to install the locked ones); regression (everything above equal,
other bits). Only the last may say "regression": a gate that calls a changed
input or another environment a regression sends people hunting for a bug that
is not there. The order the rules are tried in is what lets each verdict be
trusted: the trajectory and the code first (before any rerun), then the
environment, the data and base weights the rerun read, and only with all of
those equal, the bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .across import NO_ARRAYS_IN_LOCK
from .judge import distance_text
from .ledger import StepComparison
from .report import CheckResult

__all__ = [
    "LockCase",
    "PlanEvidence",
    "RerunEvidence",
    "input_differences",
    "judge_plan",
    "judge_rerun",
    "not_compared",
    "spec_does_not_load",
]

_RERECORD = "an intended change: re-record the lock"


@dataclass(frozen=True, kw_only=True)
class LockCase:
    """What every verdict on one lock entry names: the spec, the experiment, how to re-record."""

    spec: str
    name: str
    rerecord: str
    """The `exp lock` command that records this lock again."""

    def result(self, **fields: Any) -> CheckResult:
        return CheckResult(check="lock", target=self.spec, name=self.name, **fields)


@dataclass(frozen=True, kw_only=True)
class PlanEvidence:
    """What the spec compiles to now, against the entry: known before any rerun."""

    locked_trajectory: str
    trajectory: str
    changes: dict[str, list[Any]]
    """Trajectory fields that differ: name -> [locked, now]."""
    code: dict[str, list[Any]]
    """Inputs the plan fingerprints whose digests differ (`code:<module>`, `data.tokenizer`) -> [locked, now]."""
    has_records: bool
    """The entry holds ledger steps or full hashes to compare against."""


@dataclass(frozen=True, kw_only=True)
class RerunEvidence:
    """The entry's spec rerun here, against what the entry recorded."""

    comparison: StepComparison
    locked_steps: list[int]
    rerun_steps: list[int]
    hash_steps: list[str]
    """Steps with a full hash both in the lock and in the rerun."""
    differing_hashes: list[int]
    """Of those, the steps whose full hashes differ."""
    environment: dict[str, list[Any]]
    install: str | None
    """The command that installs the locked versions of the packages that differ."""
    inputs: dict[str, list[Any]]
    """Data and base-weight fingerprints that differ: name -> [locked, now]."""
    allow_other_environment: bool
    seconds: float = 0.0


def _short(value: Any) -> str:
    text = str(value) if value is not None else "absent"
    return text[:12] + "…" if len(text) > 16 else text


def input_differences(locked: dict[str, Any], now: dict[str, Any], keys: set[str]) -> dict[str, list[Any]]:
    """Input name -> [locked fingerprint, current fingerprint] for the named inputs that differ."""
    return {key: [locked.get(key), now.get(key)] for key in sorted(keys) if locked.get(key) != now.get(key)}


def spec_does_not_load(case: LockCase, problem: str) -> CheckResult:
    return case.result(status="error", summary=f"the spec does not load: {problem}")


def not_compared(case: LockCase, why: str, seconds: float = 0.0) -> CheckResult:
    """Not a verdict: the check could not compare anything, so it cannot pass."""
    return case.result(
        status="error", summary=f"nothing to compare: {why}", seconds=seconds, details={"rerecord": case.rerecord}
    )


def judge_plan(case: LockCase, e: PlanEvidence) -> CheckResult | None:
    """The verdict known before any rerun, or None: rerun and `judge_rerun`."""
    if e.trajectory != e.locked_trajectory:
        if e.code and not e.changes:
            return _input_changed(case, e.code)
        return _trajectory_changed(case, e.changes, e.locked_trajectory, e.trajectory)
    if not e.has_records:
        return not_compared(case, "the lock entry records no ledger steps or full hashes; re-record it")
    return None


def judge_rerun(case: LockCase, e: RerunEvidence) -> CheckResult:
    """One of the five verdicts, from the rerun."""
    if not e.comparison.compared and not e.hash_steps:
        why = f"the lock holds steps {e.locked_steps}, the rerun recorded {e.rerun_steps}"
        return not_compared(case, why, e.seconds)
    # Another environment can change what the inputs read (a library's bundled data), so it is named first.
    if e.environment and not e.allow_other_environment:
        return _environment_changed(case, e, allowed=False)
    if e.inputs:
        return _input_changed(case, e.inputs, e.seconds)
    if e.environment:
        return _environment_changed(case, e, allowed=True)
    if e.comparison.agree and not e.differing_hashes:
        return case.result(
            status="passed",
            summary=f"reproduced: {len(e.comparison.compared)} ledger steps and {len(e.hash_steps)} full hashes "
            "equal the lock's",
            compared_steps=e.comparison.compared,
            kind="reproduced",
            seconds=e.seconds,
        )
    step = e.comparison.first_divergence
    step = min(e.differing_hashes) if step is None else step
    return case.result(
        status="failed",
        summary=f"same trajectory, inputs and environment, different bits from step {step}: a regression",
        compared_steps=e.comparison.compared,
        first_divergence=step,
        leaves=e.comparison.leaves,
        kind="regression",
        seconds=e.seconds,
        likely_cause="a change the fingerprints do not cover altered the computation, or the run is not deterministic",
    )


def _trajectory_changed(case: LockCase, changes: dict[str, list[Any]], locked: str, now: str) -> CheckResult:
    listed = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in list(changes.items())[:5])
    what = listed or "no spec field: the plan format or the seed derivation changed"
    return case.result(
        status="failed",
        summary=f"trajectory changed since the lock was recorded ({what}); re-record the lock",
        kind="trajectory_changed",
        details={"changes": changes, "locked": locked, "now": now, "rerecord": case.rerecord},
        likely_cause=_RERECORD,
    )


def _input_changed(case: LockCase, inputs: dict[str, list[Any]], seconds: float = 0.0) -> CheckResult:
    listed = ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in inputs.items())
    return case.result(
        status="failed",
        summary=f"input changed since the lock was recorded: {listed}; re-record the lock if the change is intended",
        kind="input_changed",
        seconds=seconds,
        details={"inputs": inputs, "rerecord": case.rerecord},
        likely_cause="the data, base weights or custom code the run reads are not the recorded ones",
    )


def _environment_changed(case: LockCase, e: RerunEvidence, *, allowed: bool) -> CheckResult:
    listed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in list(e.environment.items())[:6])
    equal = e.comparison.agree and not e.differing_hashes
    step = max((int(s) for s in e.hash_steps), default=0)
    bits = distance_text(equal, e.comparison, [], NO_ARRAYS_IN_LOCK, step)
    install = None if allowed else e.install
    if allowed:
        summary = f"environment changed ({listed}), allowed: bitwise equality not promised; {bits}"
    else:
        fix = "install the locked versions (command below)" if install else "run where the lock was recorded"
        summary = f"environment changed since the lock was recorded: {listed}; {fix}"
    return case.result(
        status="skipped" if allowed else "failed",
        summary=summary,
        compared_steps=e.comparison.compared,
        first_divergence=e.comparison.first_divergence,
        leaves=e.comparison.leaves,
        environment=e.environment,
        kind="environment_changed",
        seconds=e.seconds,
        details={"install": install} if install else {},
        likely_cause=None
        if allowed
        else f"bitwise equality is promised only within the locked environment class ({bits}); "
        "--allow-other-environment reports the distances and skips the check",
    )
