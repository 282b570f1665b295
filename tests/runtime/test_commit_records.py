"""Checkpoint records reach the ledger when each checkpoint commits, and a kill loses none.

Saves every step, written in the background, overlap: a record held back until no
save is in progress would wait for the end of the attempt, and a SIGKILL would
lose it. Afterwards every committed checkpoint on disk has a ledger record with
the hash its own metadata holds (those the next attempt recovered are marked),
and no record names a step that never committed.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from expspec.audit.checks import RECOVERED, UNRECORDED, audit_integrity
from tests.runtime.runs import (
    DIGITS,
    committed_checkpoints,
    events,
    kill,
    ledger_records,
    run_json,
    start,
    wait_for_step,
)

STEPS = 18
ARGS = (
    str(DIGITS),
    "model.hidden=[16]",
    f"train.steps={STEPS}",
    "train.eval_every=0",
    "checkpoint.every_steps=1",
    "checkpoint.keep_last=100",  # every committed checkpoint stays on disk, to compare with the ledger
    "checkpoint.async=true",
)


def assert_checkpoints_ledgered(run_dir: Path) -> dict[int, dict]:
    """Every committed checkpoint has a ledger record equal to its metadata's hash, and
    every record names a committed checkpoint; the latest record of each step."""
    committed = committed_checkpoints(run_dir)
    saved = {
        step: json.loads((run_dir / "checkpoints" / str(step) / "meta" / "metadata").read_text())["full_hash"]
        for step in committed
    }
    records: dict[int, dict] = {}
    for record in ledger_records(run_dir):
        if record["kind"] == "checkpoint":
            assert record["step"] in saved, f"ledger records step {record['step']}, which never committed"
            assert record["full_hash"] == saved[record["step"]], record
            assert record.get("recovered", False) in (False, True)
            records[record["step"]] = record
    missing = sorted(set(committed) - set(records))
    assert not missing, f"{len(missing)} of {len(committed)} committed checkpoints have no ledger record: {missing}"
    return records


def test_every_committed_checkpoint_is_ledgered_through_sigkills(tmp_path):
    run_dir = tmp_path / "storm"
    for target in (5, 12):
        proc = start(*ARGS, "--run-dir", str(run_dir))
        wait_for_step(run_dir, target, proc)
        assert kill(proc, signal.SIGKILL) == -signal.SIGKILL
    summary = run_json(*ARGS, "--run-dir", str(run_dir))
    assert summary["outcome"] == "finished"
    records = assert_checkpoints_ledgered(run_dir)
    assert max(records) == STEPS
    recovered = [step for step, record in records.items() if record.get("recovered")]
    for step in recovered:  # written by an attempt after a kill, before it trained on
        assert records[step]["attempt"] > 0
    integrity = audit_integrity(run_dir)
    assert integrity.status == "passed" and integrity.compared_steps == list(range(1, STEPS + 1))
    assert UNRECORDED not in integrity.details and integrity.details.get(RECOVERED, []) == recovered


def _without_checkpoint_records(run_dir: Path, steps: set[int]) -> None:
    """The ledger as a kill between commit and record (or an earlier version) leaves it."""
    path = run_dir / "ledger.jsonl"
    kept = [
        line
        for line in path.read_text().splitlines(keepends=True)
        if not ('"kind":"checkpoint"' in line and json.loads(line)["step"] in steps)
    ]
    path.write_text("".join(kept))


def test_a_resume_recovers_missing_records_and_the_audit_names_what_has_none(tmp_path):
    run_dir = tmp_path / "run"
    args = (*ARGS[:2], "train.steps=8", "train.eval_every=0", "checkpoint.every_steps=2", "checkpoint.keep_last=100")
    args = (*args, "--run-dir", str(run_dir))
    run_json(*args, "--stop-at", "6")
    _without_checkpoint_records(run_dir, {2, 6})

    assert run_json(*args)["outcome"] == "finished"
    records = assert_checkpoints_ledgered(run_dir)
    assert sorted(s for s, r in records.items() if r.get("recovered")) == [2, 6]
    assert all(records[s]["attempt"] == 1 for s in (2, 6)) and "recovered" not in records[8]
    # Written before the resumed attempt trained: ahead of its first ledger record.
    kinds = [(r["kind"], r.get("attempt"), r.get("recovered")) for r in ledger_records(run_dir)]
    assert kinds.index(("checkpoint", 1, True)) < kinds.index(("leaves", 1, None))
    [note] = [e for e in events(run_dir) if e["event"] == "checkpoint_records_recovered"]
    assert note["steps"] == [2, 6]

    integrity = audit_integrity(run_dir)
    assert integrity.status == "passed" and integrity.details[RECOVERED] == [2, 6]
    assert "2 recorded from their own metadata after a kill (steps 2, 6)" in integrity.summary

    _without_checkpoint_records(run_dir, {8})  # no attempt left to recover it: the audit says so
    integrity = audit_integrity(run_dir)
    assert integrity.status == "passed" and integrity.details[UNRECORDED] == [8]
    assert "1 without a ledger record (checked against their own metadata only: step 8)" in integrity.summary
