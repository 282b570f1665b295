"""Localising a divergence: how far the differing leaves are apart, what differs
in the environment, and what most likely caused it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["environment_difference", "leaf_distances_at", "likely_cause", "recorded_environment"]


def recorded_environment(run_dir: Path) -> dict[str, Any] | None:
    """The environment class a run directory's env.json records; None without a readable one."""
    try:
        found = json.loads((run_dir / "env.json").read_text())["class"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if isinstance(found, dict) else None


def _environment(run_dir: Path) -> dict[str, Any]:
    return recorded_environment(run_dir) or {}


def environment_difference(a: Path, b: Path) -> dict[str, list[Any]]:
    """Environment-class fields that differ between two run directories: key -> [a, b]."""
    left, right = _environment(a), _environment(b)
    return {k: [left.get(k), right.get(k)] for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)}


def leaf_distances_at(one: Path, two: Path, step: int, leaves: Sequence[str]) -> list[dict[str, Any]]:
    """Max |a-b| and max ULP distance of each named leaf, from both runs' checkpoints at `step`."""
    from .checkpoints import read_checkpoint
    from .distance import describe, leaf_distances

    a = read_checkpoint(one / "checkpoints", step).state
    b = read_checkpoint(two / "checkpoints", step).state
    found = leaf_distances(a, b, only=set(leaves) or None)
    return [
        {
            "path": d.path,
            "dtype": d.dtype,
            "shape": list(d.shape),
            "differing": d.differing,
            "max_abs": d.max_abs,
            "max_ulp": d.max_ulp,
            "first_index": list(d.first_index) if d.first_index is not None else None,
            "text": describe(d),
        }
        for d in found
    ]


def likely_cause(check: str, step: int | None, cut: int | None, environment: dict[str, Any] | None) -> str:
    """A one-line diagnosis from where the divergence happened."""
    if environment:
        return f"the two sides ran in different environments ({', '.join(environment)}); bits may differ there"
    if check == "determinism":
        if step == 0:
            return (
                "the initial parameters differ between two fresh runs: initialisation draws randomness "
                "not derived from the seed tree (e.g. unseeded NumPy or Python random in custom model code)"
            )
        return (
            f"two fresh runs part at step {step}: a step depends on something besides (seed, step), such as "
            "unseeded randomness in data or model code, the clock, or a non-deterministic kernel"
        )
    if check in ("resume", "segment") and cut is not None and step == cut + 1:
        return (
            f"the process resumed at step {cut} computes a different step {cut + 1}: state outside the "
            "checkpoint (an iterator, counter or host RNG in a data source or model) changed what the step saw"
        )
    if check in ("resume", "segment") and cut is not None and step is not None:
        return f"the resumed run parts {step - cut} steps after the restore at step {cut}"
    return "unknown"
