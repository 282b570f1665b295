"""Resume-equivalence and determinism of real `exp run` processes (acceptance 1, 2, 3, 7, 8)."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from tests.runtime.runs import (
    DIGITS,
    LORA,
    SMALL_TRANSFORMER,
    TRANSFORMER,
    checkpoint_hashes,
    kill,
    ledger,
    run_json,
    start,
    wait_for_step,
)

N = 8
DIGITS_ARGS = (str(DIGITS), f"train.steps={2 * N}", "checkpoint.every_steps=5", "train.eval_every=0")


@pytest.fixture(scope="module")
def lora_base(tmp_path_factory):
    """A short full-weight transformer run whose checkpoint LoRA starts from."""
    folder = tmp_path_factory.mktemp("base")
    run_json(str(TRANSFORMER), *SMALL_TRANSFORMER, "train.steps=6", "--run-dir", str(folder))
    return folder


def _example_args(name: str, lora_base) -> tuple[str, ...]:
    if name == "digits":
        return DIGITS_ARGS
    short = (*SMALL_TRANSFORMER, f"train.steps={2 * N}", "checkpoint.every_steps=5", "train.eval_every=0")
    if name == "transformer":
        return (str(TRANSFORMER), *short)
    return (str(LORA), *short, f'model.lora.init_from="{lora_base}"', "optimizer.schedule.warmup_steps=3")


@pytest.mark.parametrize("name", ["digits", "transformer", "lora"])
def test_resumed_run_equals_uninterrupted_run_bitwise(tmp_path, name, lora_base):
    args = _example_args(name, lora_base)
    straight = run_json(*args, "--run-dir", str(tmp_path / "straight"))
    cut = run_json(*args, "--run-dir", str(tmp_path / "cut"), "--stop-at", str(N))
    assert (cut["outcome"], cut["step"]) == ("stopped", N)
    resumed = run_json(*args, "--run-dir", str(tmp_path / "cut"))
    assert resumed["outcome"] == "finished" and resumed["step"] == 2 * N
    assert resumed["full_hash"] == straight["full_hash"]
    assert ledger(tmp_path / "cut") == ledger(tmp_path / "straight")
    assert sorted(ledger(tmp_path / "straight")) == list(range(0, 2 * N + 1))  # step 0: the initial state
    assert resumed["compilations"] == 1  # the resumed process compiled the train step once


def test_two_fresh_runs_have_identical_ledgers(tmp_path):
    first = run_json(*DIGITS_ARGS, "--run-dir", str(tmp_path / "one"))
    second = run_json(*DIGITS_ARGS, "--run-dir", str(tmp_path / "two"))
    assert first["full_hash"] == second["full_hash"]
    assert ledger(tmp_path / "one") == ledger(tmp_path / "two")
    assert checkpoint_hashes(tmp_path / "one") == checkpoint_hashes(tmp_path / "two")


@pytest.fixture(scope="module")
def long_digits(tmp_path_factory):
    """An uninterrupted 160-step run to compare killed runs against."""
    args = (str(DIGITS), "train.steps=160", "checkpoint.every_steps=20", "train.eval_every=0")
    folder = tmp_path_factory.mktemp("straight")
    summary = run_json(*args, "--run-dir", str(folder))
    return args, folder, summary


def test_sigkill_at_a_random_step_then_restart(tmp_path, long_digits):
    args, straight, summary = long_digits
    seed = random.randrange(1 << 30)
    kill_at = random.Random(seed).randrange(25, 140)
    proc = start(*args, "--run-dir", str(tmp_path))
    wait_for_step(tmp_path, kill_at, proc)
    assert kill(proc, signal.SIGKILL) == -signal.SIGKILL, f"seed {seed}"
    resumed = run_json(*args, "--run-dir", str(tmp_path))
    assert resumed["full_hash"] == summary["full_hash"], f"killed near step {kill_at} (seed {seed})"
    assert ledger(tmp_path) == ledger(straight)


def test_sigterm_exits_75_with_a_checkpoint_and_resumes_bitwise(tmp_path, long_digits):
    args, straight, summary = long_digits
    proc = start(*args, "--run-dir", str(tmp_path))
    wait_for_step(tmp_path, 33, proc)
    assert kill(proc, signal.SIGTERM) == 75
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    preempted = [e for e in events if e["event"] == "preempted"]
    assert len(preempted) == 1 and preempted[0]["signal"] == "SIGTERM"
    step = preempted[0]["step"]
    assert 33 <= step < 160 and (tmp_path / "checkpoints" / str(step)).is_dir()
    assert checkpoint_hashes(tmp_path)[step] == preempted[0]["full_hash"]
    resumed = run_json(*args, "--run-dir", str(tmp_path))
    assert resumed["full_hash"] == summary["full_hash"]
    assert ledger(tmp_path) == ledger(straight)


def test_sigterm_before_the_first_step_still_exits_75(tmp_path, long_digits):
    args, straight, summary = long_digits
    proc = start(*args, "--run-dir", str(tmp_path))
    deadline = time.monotonic() + 120
    while not (tmp_path / "LOCK").exists() and time.monotonic() < deadline:  # JAX is up; no step run yet
        time.sleep(0.005)
    assert kill(proc, signal.SIGTERM) == 75, proc.stderr
    resumed = run_json(*args, "--run-dir", str(tmp_path))
    assert resumed["full_hash"] == summary["full_hash"]
