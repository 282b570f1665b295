"""Comparing two sides that ran in different environment classes.

Bitwise equality is promised only within one environment class: another mesh,
device count or process layout changes how reductions are split, so the bits
may differ. Such a comparison is not a failure; it is reported as
`cross_environment` with how far apart the states are, in units in the last
place, measured from both sides' checkpoints at the same step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .ledger import StepComparison
from .report import CheckResult

__all__ = ["cross_environment_result"]


def _distances(one: Path, two: Path, step: int) -> tuple[list[dict[str, Any]], str | None]:
    """Per-leaf distances of the two checkpoint folders at `step`, or why there are none."""
    from .checkpoints import CheckpointUnreadable, read_checkpoint
    from .distance import describe, leaf_distances

    try:
        a, b = read_checkpoint(one, step).state, read_checkpoint(two, step).state
    except CheckpointUnreadable as err:
        return [], str(err)
    found = sorted(leaf_distances(a, b), key=lambda d: -d.max_ulp)
    return [
        {"path": d.path, "differing": d.differing, "max_abs": d.max_abs, "max_ulp": d.max_ulp, "text": describe(d)}
        for d in found
    ], None


def cross_environment_result(
    check: str,
    target: str,
    name: str,
    comparison: StepComparison,
    environment: dict[str, Any],
    checkpoints: tuple[Path, Path],
    step: int,
    seconds: float,
) -> CheckResult:
    """A `skipped` result of kind `cross_environment`, with the max ULP distance at `step`."""
    differences = ", ".join(environment)
    distances, missing = _distances(*checkpoints, step)
    if comparison.agree:
        verdict = "bitwise equal anyway"
    elif missing:
        verdict = f"no distance measured ({missing})"
    else:
        worst = max((d["max_ulp"] for d in distances), default=0)
        largest = max((d["max_abs"] for d in distances), default=0.0)
        verdict = (
            f"at step {step}: max {worst} ulp, max |Δ| {largest:.3g}, in {len(distances)} leaves; "
            f"ledgers part at step {comparison.first_divergence}"
        )
    return CheckResult(
        check,
        target,
        name,
        "skipped",
        f"different environment class ({differences}): bitwise equality not promised; {verdict}",
        comparison.compared,
        comparison.first_divergence,
        comparison.leaves,
        distances=distances,
        environment=environment,
        kind="cross_environment",
        seconds=seconds,
        details={"distance_step": step, "max_ulp": max((d["max_ulp"] for d in distances), default=None)},
    )
