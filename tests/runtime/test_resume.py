"""Resume-equivalence and determinism of real `exp run` processes (acceptance 1, 2, 3, 7, 8).

Training is deterministic, so a run that silently starts again from step 0
ends on the same bits as one that resumed: every test here also reads where
each attempt began (its `start` or `resume` event) and which steps it trained.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.runtime.runs import (
    DIGITS,
    LORA,
    SMALL_TRANSFORMER,
    TRANSFORMER,
    beginnings,
    checkpoint_hashes,
    committed_checkpoints,
    events,
    kill,
    ledger,
    run_json,
    start,
    trained_steps,
    wait_for_commit,
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


# The transformer (~12 s) with -m slow; digits and LoRA by default.
@pytest.mark.parametrize("name", ["digits", pytest.param("transformer", marks=pytest.mark.slow), "lora"])
def test_resumed_run_equals_uninterrupted_run_bitwise(tmp_path, name, lora_base):
    args = _example_args(name, lora_base)
    straight = run_json(*args, "--run-dir", str(tmp_path / "straight"))
    cut = run_json(*args, "--run-dir", str(tmp_path / "cut"), "--stop-at", str(N))
    assert (cut["outcome"], cut["step"]) == ("stopped", N)
    assert trained_steps(tmp_path / "cut", 0) == list(range(1, N + 1))
    resumed = run_json(*args, "--run-dir", str(tmp_path / "cut"))
    assert resumed["outcome"] == "finished" and resumed["step"] == 2 * N
    # The second attempt took up the stop-at step's checkpoint and trained only what was left.
    assert beginnings(tmp_path / "cut") == [("start", 0), ("resume", N)]
    assert trained_steps(tmp_path / "cut", 1) == list(range(N + 1, 2 * N + 1))
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
    wait_for_commit(tmp_path, 20, proc)  # the kill lands after a checkpoint committed: there is one to resume
    assert kill(proc, signal.SIGKILL) == -signal.SIGKILL, f"seed {seed}"
    where = f"killed near step {kill_at} (seed {seed})"
    newest = committed_checkpoints(tmp_path)[-1]
    assert newest >= 20 and trained_steps(tmp_path, 0)[-1] >= kill_at, where
    # The ledger names only checkpoints that committed: a cut write is never taken for one.
    # (Records of older checkpoints remain after keep_last retired their folders.)
    on_disk = committed_checkpoints(tmp_path)
    assert {s for s in checkpoint_hashes(tmp_path) if s >= on_disk[0]} <= set(on_disk), where
    resumed = run_json(*args, "--run-dir", str(tmp_path))
    assert beginnings(tmp_path) == [("start", 0), ("resume", newest)], where
    assert trained_steps(tmp_path, 1) == list(range(newest + 1, 161)), where
    assert resumed["full_hash"] == summary["full_hash"], where
    assert ledger(tmp_path) == ledger(straight)


def test_sigterm_exits_75_with_a_checkpoint_and_resumes_bitwise(tmp_path, long_digits):
    args, straight, summary = long_digits
    proc = start(*args, "--run-dir", str(tmp_path))
    wait_for_step(tmp_path, 33, proc)
    assert kill(proc, signal.SIGTERM) == 75
    preempted = [e for e in events(tmp_path) if e["event"] == "preempted"]
    assert len(preempted) == 1 and preempted[0]["signal"] == "SIGTERM"
    step = preempted[0]["step"]
    assert 33 <= step < 160 and (tmp_path / "checkpoints" / str(step)).is_dir()
    assert checkpoint_hashes(tmp_path)[step] == preempted[0]["full_hash"]
    assert trained_steps(tmp_path, 0) == list(range(1, step + 1))
    resumed = run_json(*args, "--run-dir", str(tmp_path))
    assert beginnings(tmp_path) == [("start", 0), ("resume", step)]
    assert trained_steps(tmp_path, 1) == list(range(step + 1, 161))
    assert resumed["full_hash"] == summary["full_hash"]
    assert ledger(tmp_path) == ledger(straight)


def test_sigterm_before_the_first_step_still_exits_75(tmp_path, long_digits):
    args, straight, summary = long_digits
    proc = start(*args, "--run-dir", str(tmp_path))
    deadline = time.monotonic() + 120
    while not (tmp_path / "LOCK").exists() and time.monotonic() < deadline:  # JAX is up; no step run yet
        time.sleep(0.005)
    assert kill(proc, signal.SIGTERM) == 75, proc.stderr
    # Nothing was trained or saved: the run stopped where it stood, at step 0.
    (preempted,) = [e for e in events(tmp_path) if e["event"] == "preempted"]
    assert (preempted["step"], preempted["signal"]) == (0, "SIGTERM")
    assert trained_steps(tmp_path, 0) == []
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    resumed = run_json(*args, "--run-dir", str(tmp_path))
    assert beginnings(tmp_path) == [("start", 0), ("start", 0)]  # no checkpoint: the next attempt starts afresh
    assert trained_steps(tmp_path, 1) == list(range(1, 161))
    assert resumed["full_hash"] == summary["full_hash"]
    assert ledger(tmp_path) == ledger(straight)
