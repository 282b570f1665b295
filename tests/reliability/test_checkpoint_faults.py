"""Unfinished, corrupt and torn files: detected, set aside or repaired, and never trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.runtime.runs import DIGITS, exp, ledger, run_json

ARGS = (str(DIGITS), "train.steps=60", "checkpoint.every_steps=10", "checkpoint.keep_last=10", "train.eval_every=0")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    return run_json(*ARGS, "--run-dir", str(folder)), folder


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_unfinished_checkpoints_are_ignored_cleaned_and_do_not_block_later_saves(tmp_path, straight):
    run_json(*ARGS, "--stop-at", "20", "--run-dir", str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(checkpoints / "20", checkpoints / "30.orbax-checkpoint-tmp-1234")  # an interrupted write
    shutil.copytree(checkpoints / "20", checkpoints / "40")  # a step folder never committed
    (checkpoints / "40" / "commit_success.txt").unlink()
    summary = run_json(*ARGS, "--run-dir", str(tmp_path))
    resumes = [e for e in _events(tmp_path) if e["event"] == "resume"]
    assert [e["step"] for e in resumes] == [20]
    cleanups = [e["note"] for e in _events(tmp_path) if e["event"] == "checkpoint_cleanup"]
    assert len(cleanups) == 2 and not (checkpoints / "30.orbax-checkpoint-tmp-1234").exists()
    assert any(p.name.startswith("40-unfinished") for p in (tmp_path / "rejected").iterdir())
    # Step 40 was saved afresh: the stale folder did not make Orbax skip it.
    assert (checkpoints / "40" / "commit_success.txt").exists()
    assert summary["full_hash"] == straight[0]["full_hash"] and ledger(tmp_path) == ledger(straight[1])


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, straight, damage):
    run_json(*ARGS, "--stop-at", "30", "--run-dir", str(tmp_path))
    victim = _largest_file(tmp_path / "checkpoints" / "30" / "state")
    raw = bytearray(victim.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01
    else:
        del raw[len(raw) // 2 :]
    victim.write_bytes(bytes(raw))
    summary = run_json(*ARGS, "--run-dir", str(tmp_path))
    rejected = [e for e in _events(tmp_path) if e["event"] == "checkpoint_rejected"]
    assert [e["step"] for e in rejected] == [30] and rejected[0]["reason"]
    assert [e["step"] for e in _events(tmp_path) if e["event"] == "resume"] == [20]
    assert Path(rejected[0]["moved_to"]).is_dir()  # set aside, not deleted
    assert summary["full_hash"] == straight[0]["full_hash"] and ledger(tmp_path) == ledger(straight[1])


def test_no_intact_checkpoint_means_no_training(tmp_path):
    run_json(*ARGS, "checkpoint.every_steps=100", "--stop-at", "10", "--run-dir", str(tmp_path))
    victim = _largest_file(tmp_path / "checkpoints" / "10" / "state")
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    before = (tmp_path / "ledger.jsonl").read_bytes()
    result = exp("run", *ARGS, "checkpoint.every_steps=100", "--run-dir", str(tmp_path))
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert "no checkpoint is intact" in line and "refusing to train on corrupt state" in line
    assert (tmp_path / "ledger.jsonl").read_bytes() == before
    assert _events(tmp_path)[-1]["event"] == "error"
    assert (tmp_path / "checkpoints" / "10").is_dir()  # nothing moved when there is nothing to fall back to


def test_torn_ledger_and_metrics_lines_are_repaired_on_resume(tmp_path, straight):
    run_json(*ARGS, "--stop-at", "20", "--run-dir", str(tmp_path))
    intact = {name: (tmp_path / name).read_bytes() for name in ("ledger.jsonl", "metrics.jsonl")}
    for name in intact:
        with (tmp_path / name).open("ab") as handle:
            handle.write(b'{"kind":"step","step":21,"par')  # a write cut off by a kill
    summary = run_json(*ARGS, "--run-dir", str(tmp_path))
    for name, before in intact.items():
        after = (tmp_path / name).read_bytes()
        assert after.startswith(before)  # no earlier line lost
        assert all(json.loads(line) for line in after.decode().splitlines())  # the torn tail is gone
    assert summary["full_hash"] == straight[0]["full_hash"] and ledger(tmp_path) == ledger(straight[1])


@pytest.mark.slow
def test_corruption_drills(tmp_path):
    import random

    from tests.reliability.corrupt import drill

    seed = random.randrange(1 << 30)
    result = drill(tmp_path, 20, seed)
    print(result.line(seed))
    assert result.trained_on_corrupt_state == 0 and result.equal == result.injected, result.line(seed)
