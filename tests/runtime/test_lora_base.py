"""LoRA base weights are pinned to one verified base checkpoint and never silently swapped.

A LoRA run records the base checkpoint it started from (run, step, full hash);
every later attempt re-reads that step, and a base checkpoint that does not
restore to its recorded hash is refused, never trained on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.runtime.runs import LORA, SMALL_TRANSFORMER, TRANSFORMER, checkpoint_hashes, exp, run_json, snapshot

# A constant schedule keeps `train.steps` operational, so the base run may be continued.
CONSTANT = 'optimizer.schedule={kind="constant"}'
BASE = (str(TRANSFORMER), *SMALL_TRANSFORMER, CONSTANT, "train.eval_every=0", "checkpoint.every_steps=2")
BASE_STEPS = 4
LORA_ARGS = (
    str(LORA),
    *SMALL_TRANSFORMER,
    "train.steps=6",
    "train.eval_every=0",
    "checkpoint.every_steps=2",
    "optimizer.schedule.warmup_steps=1",
)


def _lora(base: Path) -> tuple[str, ...]:
    return (*LORA_ARGS, f'model.lora.init_from="{base}"')


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _meta(run_dir: Path, step: int) -> dict:
    return json.loads((run_dir / "checkpoints" / str(step) / "meta" / "metadata").read_text())


def _refusal(result) -> str:
    """The one line of an exit-2 refusal."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A finished 4-step base run that keeps all its checkpoints (2 and 4)."""
    folder = tmp_path_factory.mktemp("lora-base") / "base"
    run_json(*BASE, f"train.steps={BASE_STEPS}", "checkpoint.keep_last=10", "--run-dir", str(folder))
    return folder


@pytest.fixture(scope="module")
def straight(base, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted LoRA run from the base as it was."""
    folder = tmp_path_factory.mktemp("lora-straight") / "lora"
    return folder, run_json(*_lora(base), "--run-dir", str(folder))


def _copy(base: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    return copy


def test_start_event_and_checkpoints_record_the_base_checkpoint(base, straight):
    folder, _ = straight
    pinned = {"run": str(base), "step": BASE_STEPS, "full_hash": checkpoint_hashes(base)[BASE_STEPS]}
    (start,) = [e for e in _events(folder) if e["event"] == "start"]
    assert start["base_checkpoint"] == pinned
    assert isinstance(start["base_weights"], str)
    for step in (2, 4, 6):
        meta = _meta(folder, step)
        assert meta["base_checkpoint"] == pinned
        assert meta["base_weights"] == start["base_weights"]


def test_resume_after_the_base_moved_on_trains_on_the_recorded_step(base, straight, tmp_path):
    copy = _copy(base, tmp_path)
    lora = tmp_path / "lora"
    cut = run_json(*_lora(copy), "--stop-at", "2", "--run-dir", str(lora))
    assert (cut["outcome"], cut["step"]) == ("stopped", 2)
    # An allowed operational change to the base: more steps, so a newer latest checkpoint.
    run_json(*BASE, "train.steps=8", "checkpoint.keep_last=10", "--run-dir", str(copy))
    assert max(checkpoint_hashes(copy)) == 8
    resumed = run_json(*_lora(copy), "--run-dir", str(lora))
    assert resumed["outcome"] == "finished" and resumed["step"] == 6
    assert resumed["full_hash"] == straight[1]["full_hash"]
    assert _meta(lora, 6)["base_checkpoint"]["step"] == BASE_STEPS


def test_resume_refuses_when_the_recorded_base_step_was_retired(base, tmp_path):
    copy = _copy(base, tmp_path)
    lora = tmp_path / "lora"
    run_json(*_lora(copy), "--stop-at", "2", "--run-dir", str(lora))
    run_json(*BASE, "train.steps=8", "checkpoint.keep_last=1", "--run-dir", str(copy))
    assert not (copy / "checkpoints" / str(BASE_STEPS)).exists()
    before = snapshot(lora)
    result = exp("run", *_lora(copy), "--run-dir", str(lora))
    line = _refusal(result)
    assert str(copy) in line and f"step {BASE_STEPS}" in line and "Traceback" not in result.stderr
    assert snapshot(lora) == before


def _flip_a_byte(checkpoint: Path) -> None:
    """Flip one byte in the middle of the checkpoint's largest array data file."""
    victim = max((p for p in (checkpoint / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))


def test_a_damaged_base_checkpoint_is_refused_never_trained_on(base, tmp_path):
    copy = _copy(base, tmp_path)
    _flip_a_byte(copy / "checkpoints" / str(BASE_STEPS))
    audit = exp("audit", str(copy))
    assert audit.returncode == 1, audit.stdout + audit.stderr  # the base's own audit sees it too
    lora = tmp_path / "lora"
    result = exp("run", *_lora(copy), "--run-dir", str(lora))
    line = _refusal(result)
    assert str(copy) in line and f"step {BASE_STEPS}" in line and "Traceback" not in result.stderr
    assert not lora.exists()
