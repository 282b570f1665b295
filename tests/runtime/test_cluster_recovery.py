"""A sharded cluster resumes from a checkpoint one member cannot read.

In an FSDP layout each process reads only its own shards, so one member can
find a checkpoint damaged while the others restore it. The members must agree
on one verdict per checkpoint before any collective that depends on it: all
resume from the newest step every member verified, and the step one member
rejected is set aside and recorded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.runtime.runs import DIGITS, EXP, ROOT

SHARDED = (
    str(DIGITS),
    "mesh.data=1",
    "mesh.fsdp=2",
    "model.hidden=[16]",
    "train.steps=30",
    "checkpoint.every_steps=10",
    "train.eval_every=0",
)
"""Digits with every split array half on each of two processes: seconds per launch."""


def _launch(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    command = [EXP, "launch", "--processes", "2", "--devices-per-process", "1", *SHARDED]
    return subprocess.Popen(
        [*command, "--run-dir", str(run_dir), "--json", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return json.loads(out)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _damage_process_1_shard(run_dir: Path, step: int) -> Path:
    """Truncate the largest data file process 1 wrote for `step` (process 0 never reads it)."""
    files = (run_dir / "checkpoints" / str(step) / "state" / "ocdbt.process_1" / "d").iterdir()
    largest = max(files, key=lambda p: p.stat().st_size)
    with largest.open("r+b") as handle:
        handle.truncate(largest.stat().st_size // 2)
    return largest


def _resume_past_a_damaged_shard(run_dir: Path, first: subprocess.Popen[str]) -> dict:
    """Stop `first` at step 20, damage process 1's shard of step 20, relaunch; the relaunch's summary."""
    assert _finish(first)["step"] == 20
    _damage_process_1_shard(run_dir, 20)
    summary = _finish(_launch(run_dir))
    assert summary["outcome"] == "finished" and summary["step"] == 30

    events = _records(run_dir / "events.jsonl")
    resumed = [e for e in events if e["event"] == "resume"]
    assert [e["step"] for e in resumed] == [10]
    rejected = [e for e in events if e["event"] == "checkpoint_rejected"]
    assert [(e["step"], e["processes"]) for e in rejected] == [(20, [1])], rejected
    assert "cannot be read" in rejected[0]["reason"]
    moved = Path(rejected[0]["moved_to"])
    assert moved.parent == run_dir / "rejected" and moved.name.startswith("20-rejected-")
    assert (moved / "state" / "ocdbt.process_1").is_dir()
    # Both members trained steps 11..30 again, from the same state: every step's
    # record of the relaunch equals the first attempt's, in both ledgers.
    for ledger in ("ledger.jsonl", "ledger.process-1.jsonl"):
        seen: dict[int, tuple[str, str]] = {}
        for record in _records(run_dir / ledger):
            if record["kind"] == "step":
                entry = (record["params"], record["opt"])
                assert seen.setdefault(record["step"], entry) == entry, f"{ledger} step {record['step']}"
        assert max(seen) == 30
    return summary


def test_a_shard_one_member_cannot_read_is_set_aside_by_all_and_the_cluster_resumes(tmp_path):
    run_dir = tmp_path / "run"
    _resume_past_a_damaged_shard(run_dir, _launch(run_dir, "--stop-at", "20"))


@pytest.mark.slow
def test_a_cluster_resumed_past_a_damaged_shard_ends_like_an_uninterrupted_one(tmp_path):
    reference = _launch(tmp_path / "reference")  # alongside: one start-up's worth of waiting
    run_dir = tmp_path / "run"
    summary = _resume_past_a_damaged_shard(run_dir, _launch(run_dir, "--stop-at", "20"))
    expected = _finish(reference)
    assert expected["outcome"] == "finished" and expected["step"] == 30
    assert summary["full_hash"] == expected["full_hash"]
