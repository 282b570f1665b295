"""Ledger records for committed checkpoints that have none, written before a resumed attempt trains.

The loop ledgers each checkpoint as soon as its write commits; a SIGKILL between
the commit and the record, or a ledger written by an earlier version (which held
records back while any save was in progress), leaves a committed checkpoint
without one. Its own JSON record holds the full hash computed when it was saved,
so the ledger record is written from there and marked `"recovered": true`: the
audit then finds a record for every checkpoint, and knows which ones came from
the checkpoint itself rather than from the run that saved it.
"""

from __future__ import annotations

from pathlib import Path

from expspec.runtime.engine.checkpoint import Checkpointer
from expspec.runtime.runs.records import DamagedRecord, JsonLines, lines_backwards, parse_record
from expspec.runtime.runs.run_files import Kind

__all__ = ["RECOVERED", "recorded_checkpoints", "recover_checkpoint_records"]

RECOVERED = "recovered"
"""The field that marks a checkpoint record written from the checkpoint's own metadata."""

_MARK = Kind.CHECKPOINT.value.encode()
"""A line without these bytes holds no checkpoint record, and is not parsed."""


def recorded_checkpoints(ledger: Path, wanted: set[int]) -> set[int]:
    """Those of `wanted` that have a checkpoint record in `ledger`.

    Read from the end, parsing only checkpoint lines, and only until every wanted
    step is found: the usual case (nothing missing) costs the ledger's tail.
    """
    found: set[int] = set()
    for line in lines_backwards(ledger):
        if found >= wanted:
            break
        if _MARK not in line:
            continue
        try:
            record = parse_record(line, ledger)
        except DamagedRecord:  # a damaged line holds no record
            continue
        step = record.get("step") if record.get("kind") == Kind.CHECKPOINT else None
        if step in wanted and isinstance(record.get("full_hash"), str):
            found.add(step)
    return found


def recover_checkpoint_records(checkpointer: Checkpointer, ledger: JsonLines, attempt: int) -> list[int]:
    """Ledger every committed checkpoint that has no record, from the full hash in its
    own metadata (marked recovered); the steps recovered, oldest first.

    A checkpoint whose metadata cannot be read or holds no full hash gets no record:
    it is judged when it is restored, and the audit names it.
    """
    on_disk = set(checkpointer.steps())
    missing = sorted(on_disk - recorded_checkpoints(ledger.path, on_disk))
    recovered: list[int] = []
    for step in missing:
        try:
            meta = checkpointer.read_meta(step)
        except Exception:  # Orbax raises plain exceptions for unreadable files
            continue
        digest = meta.get("full_hash")
        if meta.get("step") != step or not isinstance(digest, str):
            continue
        ledger.write({"kind": Kind.CHECKPOINT, "step": step, "full_hash": digest, "attempt": attempt, RECOVERED: True})
        recovered.append(step)
    return recovered
