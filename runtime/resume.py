"""Choosing where to resume: the newest checkpoint that proves intact.

A checkpoint is trusted only if its state restores to the full hash recorded
when it was saved. A damaged one is set aside (never deleted) and the next
older one tried; when none proves intact the run refuses to train at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exp.compiler import Plan

from .build import Components, saved_part
from .checkpoint import Checkpointer
from .hashing import full_hash
from .launch import RunFailed
from .rundir import RunRefused

__all__ = ["ResumePoint", "check_identity", "find_resume_point"]


class _Rejected(Exception):
    """This checkpoint cannot be trusted; the reason is one line."""


@dataclass
class ResumePoint:
    step: int
    meta: dict[str, Any]
    state: Any
    rejected: dict[int, str] = field(default_factory=dict)
    """Newer checkpoints that failed verification: step -> reason."""


def check_identity(checkpointer: Checkpointer, plan: Plan, comps: Components, where: str) -> None:
    """Refuse checkpoints of another trajectory, of other data or of other LoRA base
    weights (reads only their JSON records)."""
    for step in reversed(checkpointer.steps()):
        try:
            meta = checkpointer.read_meta(step)
        except Exception:  # an unreadable record is judged by find_resume_point
            continue
        if meta.get("trajectory") != plan.fingerprints.trajectory:
            raise RunRefused(
                f"{checkpointer.directory}/{step}: checkpoint of trajectory {str(meta.get('trajectory'))[:12]}, "
                f"this spec has {plan.fingerprints.trajectory[:12]}"
            )
        pinned, used = meta.get("base_checkpoint"), comps.base_checkpoint
        if (
            isinstance(pinned, dict)
            and used is not None
            and (pinned.get("step"), pinned.get("full_hash")) != (used["step"], used["full_hash"])
        ):
            raise RunRefused(
                f"{checkpointer.directory}/{step}: checkpoint trained on base run {pinned.get('run')} step "
                f"{pinned.get('step')}, but base step {used['step']} was loaded; use another --run-dir"
            )
        if meta.get("data") != comps.data.fingerprint:
            raise RunRefused(
                f"{where}: the data changed since this run started "
                f"(fingerprint {str(meta.get('data'))[:12]} -> {comps.data.fingerprint[:12]}); use another --run-dir"
            )
        return


def _restore_verified(checkpointer: Checkpointer, comps: Components, step: int) -> tuple[dict[str, Any], Any]:
    try:
        meta = checkpointer.read_meta(step)
        restored, _ = checkpointer.restore(step, saved_part(comps.state, meta.get("save", "full")))
    except Exception as err:  # Orbax and TensorStore raise plain exceptions for unreadable bytes
        raise _Rejected(f"cannot be read: {(str(err).splitlines() or [type(err).__name__])[0][:200]}") from err
    digest = full_hash(comps.layout.to_host(restored))
    if digest != meta.get("full_hash"):
        raise _Rejected(f"restores to hash {digest[:12]}, but {str(meta.get('full_hash'))[:12]} was recorded")
    return meta, {**comps.state, **restored}


def find_resume_point(checkpointer: Checkpointer, comps: Components) -> ResumePoint | None:
    """The newest intact checkpoint (None for a fresh run); raise if some exist and none is intact."""
    rejected: dict[int, str] = {}
    for step in reversed(checkpointer.steps()):
        try:
            meta, state = _restore_verified(checkpointer, comps, step)
        except _Rejected as err:
            rejected[step] = str(err)
            continue
        return ResumePoint(step, meta, state, rejected)
    if rejected:
        listed = "; ".join(f"step {s}: {r}" for s, r in sorted(rejected.items()))
        raise RunFailed(
            f"{checkpointer.directory}: no checkpoint is intact ({listed}); refusing to train on corrupt state"
        )
    return None
