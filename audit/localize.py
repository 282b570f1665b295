"""Localising a divergence: how far the differing leaves are apart, and what
differs in the environment (the evidence; `judge` names the likely cause)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expspec.runtime.runs.run_files import RunFiles

__all__ = ["environment_difference", "leaf_distances_at", "recorded_environment"]


def recorded_environment(run_dir: Path) -> dict[str, Any] | None:
    """The environment class a run directory's env.json records; None without a readable one."""
    try:
        found = json.loads(RunFiles(run_dir).env.read_text())["class"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if isinstance(found, dict) else None


def _settings(side: Mapping[str, Any] | Path) -> dict[str, Any]:
    """An environment class as one setting per key; each package is its own setting
    (`packages.numpy`), so a difference names the package that moved."""
    found = dict((recorded_environment(side) or {}) if isinstance(side, Path) else side)
    packages = found.pop("packages", None)
    if isinstance(packages, dict):
        found.update({f"packages.{name}": version for name, version in packages.items()})
    elif packages is not None:
        found["packages"] = packages
    return found


def environment_difference(a: Mapping[str, Any] | Path, b: Mapping[str, Any] | Path) -> dict[str, list[Any]]:
    """Environment-class settings that differ between two sides: key -> [a, b]. A side
    is a run directory (its env.json) or an environment class (a lock entry's)."""
    left, right = _settings(a), _settings(b)
    return {k: [left.get(k), right.get(k)] for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)}


def leaf_distances_at(one: Path, two: Path, step: int, leaves: Sequence[str]) -> list[dict[str, Any]]:
    """Max |a-b| and max ULP distance of each named leaf, from both runs' checkpoints at `step`."""
    from .checkpoints import read_checkpoint
    from .distance import describe, leaf_distances

    a = read_checkpoint(RunFiles(one).default_checkpoints, step).state
    b = read_checkpoint(RunFiles(two).default_checkpoints, step).state
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
