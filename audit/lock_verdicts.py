"""The five verdicts of a lock check, each with its own `kind` and its own line.

reproduced; trajectory_changed (re-record); input_changed (which input, both
fingerprints); environment_changed (which packages or settings, both values,
and how to install the locked ones); regression (everything above equal,
other bits). Only the last may say "regression": a gate that calls a changed
input or another environment a regression sends people hunting for a bug that
is not there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ledger import StepComparison
from .report import CheckResult

__all__ = [
    "LockCase",
    "environment_changed",
    "environment_differences",
    "input_changed",
    "input_differences",
    "not_compared",
    "regression",
    "reproduced",
    "trajectory_changed",
]

_RERECORD = "an intended change: re-record the lock"


@dataclass(frozen=True)
class LockCase:
    """What every verdict on one lock entry names: the spec, the experiment, how to re-record."""

    spec: str
    name: str
    rerecord: str
    """The `exp lock` command that records this lock again."""

    def result(self, status: str, summary: str, **extra: Any) -> CheckResult:
        return CheckResult("lock", self.spec, self.name, status, summary, **extra)  # type: ignore[arg-type]


def _short(value: Any) -> str:
    text = str(value) if value is not None else "absent"
    return text[:12] + "…" if len(text) > 16 else text


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def environment_differences(locked: dict[str, Any], now: dict[str, Any]) -> dict[str, list[Any]]:
    """`packages.numpy` -> [locked, now] for every setting of the environment class that differs."""
    a, b = _flat(locked), _flat(now)
    return {key: [a.get(key), b.get(key)] for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def input_differences(locked: dict[str, Any], now: dict[str, Any], keys: set[str]) -> dict[str, list[Any]]:
    """Input name -> [locked fingerprint, current fingerprint] for the named inputs that differ."""
    return {key: [locked.get(key), now.get(key)] for key in sorted(keys) if locked.get(key) != now.get(key)}


def trajectory_changed(case: LockCase, changes: dict[str, list[Any]], locked: str, now: str) -> CheckResult:
    listed = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in list(changes.items())[:5])
    what = listed or "no spec field: the plan format or the seed derivation changed"
    return case.result(
        "failed",
        f"trajectory changed since the lock was recorded ({what}); re-record the lock",
        kind="trajectory_changed",
        details={"changes": changes, "locked": locked, "now": now, "rerecord": case.rerecord},
        likely_cause=_RERECORD,
    )


def input_changed(case: LockCase, inputs: dict[str, list[Any]], seconds: float = 0.0) -> CheckResult:
    listed = ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in inputs.items())
    return case.result(
        "failed",
        f"input changed since the lock was recorded: {listed}; re-record the lock if the change is intended",
        kind="input_changed",
        seconds=seconds,
        details={"inputs": inputs, "rerecord": case.rerecord},
        likely_cause="the data, base weights or custom code the run reads are not the recorded ones",
    )


def environment_changed(
    case: LockCase,
    differences: dict[str, list[Any]],
    install: str | None,
    *,
    allowed: bool,
    equal_bits: bool,
    distances: list[dict[str, Any]],
    comparison: StepComparison,
    seconds: float,
) -> CheckResult:
    listed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in list(differences.items())[:6])
    worst = max((d["relative_norm_distance"] for d in distances), default=0.0)
    bits = "bitwise equal anyway" if equal_bits else f"max relative leaf-norm distance {worst:.3g}"
    details: dict[str, Any] = {}
    if install:
        details["install"] = install
    if allowed:
        summary = f"environment changed ({listed}), allowed: bitwise equality not promised; {bits}"
    else:
        fix = "install the locked versions (command below)" if install else "run where the lock was recorded"
        summary = f"environment changed since the lock was recorded: {listed}; {fix}"
    return case.result(
        "skipped" if allowed else "failed",
        summary,
        compared_steps=comparison.compared,
        first_divergence=comparison.first_divergence,
        leaves=comparison.leaves,
        environment=differences,
        kind="environment_changed",
        seconds=seconds,
        distances=distances,
        details=details,
        likely_cause=None
        if allowed
        else f"bitwise equality is promised only within the locked environment class ({bits}); "
        "--allow-other-environment reports the distances and skips the check",
    )


def not_compared(case: LockCase, why: str, seconds: float = 0.0) -> CheckResult:
    """Not a verdict: the check could not compare anything, so it cannot pass."""
    return case.result("error", f"nothing to compare: {why}", seconds=seconds, details={"rerecord": case.rerecord})


def reproduced(case: LockCase, comparison: StepComparison, full_hashes: int, seconds: float) -> CheckResult:
    return case.result(
        "passed",
        f"reproduced: {len(comparison.compared)} ledger steps and {full_hashes} full hashes equal the lock's",
        compared_steps=comparison.compared,
        kind="reproduced",
        seconds=seconds,
    )


def regression(case: LockCase, comparison: StepComparison, step: int, seconds: float) -> CheckResult:
    return case.result(
        "failed",
        f"same trajectory, inputs and environment, different bits from step {step}: a regression",
        compared_steps=comparison.compared,
        first_divergence=step,
        leaves=comparison.leaves,
        kind="regression",
        seconds=seconds,
        likely_cause="a change the fingerprints do not cover altered the computation, or the run is not deterministic",
    )
