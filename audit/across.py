"""Comparing two sides that ran in different environment classes.

Bitwise equality is promised only within one environment class: another mesh,
device count or process layout changes how reductions are split, so the bits
may differ. Such a comparison is not a failure; it is reported (by
`judge.judge_across`) with how far apart the states are. The one measure is
the max distance in units in the last place per leaf, exact, from both sides'
arrays at the same step; where one side holds no arrays (a lock entry), no
distance is measured and the report says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["NO_ARRAYS_IN_LOCK", "measure_across"]

NO_ARRAYS_IN_LOCK = "a lock entry holds fingerprints, not arrays"
"""Why a lock verdict across environment classes names no distance."""


def measure_across(one: Path, two: Path, step: int) -> tuple[list[dict[str, Any]], str | None]:
    """Per-leaf distances of two checkpoint folders at `step`, largest ULP distance
    first, or why there are none."""
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
