"""Choosing where to resume: the newest checkpoint that proves intact.

A checkpoint is trusted only if its state restores to the full hash recorded
when it was saved. A damaged one is set aside (never deleted) and the next
older one tried; when none proves intact the run refuses to train at all.

In a cluster each process reads only its own shards, so one member can find a
checkpoint damaged that the others restore. The members exchange their verdict
on each candidate before anything that depends on it (the hash's gather is a
collective): all of them resume from the newest step every member verified,
and a step any member rejects is rejected by all.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from expspec.compiler import Plan
from expspec.errors import RunFailure
from expspec.runtime.engine.build import Components, saved_part
from expspec.runtime.engine.checkpoint import Checkpointer
from expspec.runtime.engine.checkpoint_reads import hash_mismatch
from expspec.runtime.processes.cluster import Cluster, gather_text
from expspec.runtime.processes.execute import RunFailed
from expspec.runtime.runs.rundir import RunRefused

__all__ = ["ResumePoint", "check_identity", "find_resume_point"]


class _Rejected(RunFailure):
    """This checkpoint cannot be trusted; the reason is one line."""


@dataclass
class ResumePoint:
    step: int
    meta: dict[str, Any]
    state: Any
    rejected: dict[int, str] = field(default_factory=dict)
    """Newer checkpoints that failed verification: step -> reason."""
    rejected_by: dict[int, list[int]] = field(default_factory=dict)
    """step -> the processes that rejected it ([0] outside a cluster); the reason is the first one's."""


def check_identity(
    checkpointer: Checkpointer, plan: Plan, comps: Components, where: str, equivalent: Collection[str] = ()
) -> None:
    """Refuse checkpoints of another trajectory, of other data or of other LoRA base
    weights (reads only their JSON records).

    `equivalent` holds the trajectory fingerprints the run directory's recorded plans
    prove to be this plan's math (`RecordedPlan.equivalent`): a checkpoint written
    before an upgrade changed how the fingerprint is computed carries one of them.
    """
    for step in reversed(checkpointer.steps()):
        try:
            meta = checkpointer.read_meta(step)
        except Exception:  # an unreadable record is judged by find_resume_point
            continue
        if meta.get("trajectory") != plan.fingerprints.trajectory and meta.get("trajectory") not in equivalent:
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


def _read(checkpointer: Checkpointer, comps: Components, step: int) -> tuple[dict[str, Any], Any]:
    """This process's part of the checkpoint and its record (no collective: a failure here is a verdict)."""
    try:
        meta = checkpointer.read_meta(step)
        restored, _ = checkpointer.restore(step, saved_part(comps.state, meta.get("save", "full")))
    except Exception as err:  # Orbax and TensorStore raise plain exceptions for unreadable bytes
        raise _Rejected(f"cannot be read: {(str(err).splitlines() or [type(err).__name__])[0][:200]}") from err
    return meta, restored


def _agree(cluster: Cluster, verdict: str | None) -> tuple[str, list[int]] | None:
    """The first rejection any process made and who made one (the same on every process);
    None when every process verified. A collective: every process calls it for every verdict."""
    verdicts = gather_text(cluster, verdict or "")
    who = [index for index, text in enumerate(verdicts) if text]
    return (verdicts[who[0]], who) if who else None


def _candidates(checkpointer: Checkpointer) -> list[tuple[int, str | None]]:
    """Every step any process lists, newest first, each with this process's verdict when it does not list it."""
    own = checkpointer.steps()
    cluster = checkpointer.cluster
    listed = set(own)
    if cluster.multi:  # one list for all, so that every process issues the same collectives
        listed = listed.union(*(json.loads(text) for text in gather_text(cluster, json.dumps(own))))
    missing = "is not among the committed checkpoints this process sees"
    return [(step, None if step in own else missing) for step in sorted(listed, reverse=True)]


def find_resume_point(checkpointer: Checkpointer, comps: Components) -> ResumePoint | None:
    """The newest checkpoint every process verified (None for a fresh run); raise if some exist and none is intact.

    Every process takes each candidate through the same collectives in the same
    order, whatever it found: a read error on one is exchanged as a verdict, and
    the hash (a gather) is computed only when every process holds the state.
    """
    cluster = checkpointer.cluster
    rejected: dict[int, str] = {}
    rejected_by: dict[int, list[int]] = {}
    for step, verdict in _candidates(checkpointer):
        read = None
        if verdict is None:
            try:
                read = _read(checkpointer, comps, step)
            except _Rejected as err:
                verdict = str(err)
        agreed = _agree(cluster, verdict)
        if agreed is None and read is not None:  # every process holds its part: all join the gather
            meta, restored = read
            verdict = hash_mismatch(comps.layout.to_host(restored), meta)
            agreed = _agree(cluster, verdict)
            if agreed is None:
                return ResumePoint(step, meta, {**comps.state, **restored}, rejected, rejected_by)
        if agreed is not None:
            rejected[step], rejected_by[step] = agreed
    if rejected:
        listed = "; ".join(f"step {s}: {r}" for s, r in sorted(rejected.items()))
        raise RunFailed(
            f"{checkpointer.directory}: no checkpoint is intact ({listed}); refusing to train on corrupt state"
        )
    return None
