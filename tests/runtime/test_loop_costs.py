"""What the loop does to stay cheap must not change what it records or computes."""

from __future__ import annotations

import json

from tests.runtime.runs import DIGITS, checkpoint_hashes, ledger, run_json

ARGS = (str(DIGITS), "train.steps=10", "train.eval_every=0", "checkpoint.every_steps=4")


def _events(run_dir, name):
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def test_steps_the_ledger_skips_train_to_the_same_bits(tmp_path):
    every = run_json(*ARGS, "--run-dir", str(tmp_path / "every"))
    sparse = run_json(*ARGS, "train.ledger_every=4", "--run-dir", str(tmp_path / "sparse"))
    assert sparse["full_hash"] == every["full_hash"]
    assert (every["compilations"], sparse["compilations"]) == (1, 2)  # the unhashed step only where used
    full, thin = ledger(tmp_path / "every"), ledger(tmp_path / "sparse")
    assert sorted(thin) == [0, 4, 8, 10]  # the initial state, the multiples of 4, the last step
    assert thin == {step: full[step] for step in thin}


def test_checkpoints_hashed_off_the_loop_are_recorded_with_their_cost(tmp_path):
    result = run_json(*ARGS, "--run-dir", str(tmp_path / "run"))
    saves = _events(tmp_path / "run", "checkpoint_save")
    assert [e["step"] for e in saves] == [4, 8, 10]
    assert all(0 <= e["blocked_s"] < 60 for e in saves)
    hashes = checkpoint_hashes(tmp_path / "run")
    assert sorted(hashes) == [4, 8, 10]
    assert hashes[10] == result["full_hash"]  # hashed on the worker thread, from the device copy
    # A checkpoint saved while the next step trains must still hold the state after its own
    # step: the bits a run stopped there ends on, hashed on the loop's thread from its state.
    for step in (4, 8):
        stopped = run_json(*ARGS, "--stop-at", str(step), "--run-dir", str(tmp_path / f"stop-at-{step}"))
        assert (stopped["outcome"], stopped["step"]) == ("stopped", step), stopped
        assert hashes[step] == stopped["full_hash"], f"checkpoint {step} does not hold the state after step {step}"
