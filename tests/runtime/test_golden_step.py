"""The digits MLP's first step, pinned: a change to the training math fails here first.

A refactor of the engine (the step, the loop, the optimizer, the hashing,
checkpointing) must leave the bits alone. One `exp run --stop-at 1` of the
example with a fixed seed is compared with fingerprints recorded from it: the
ledger's step-1 `params` and `opt` fingerprints and the full hash of the
checkpoint it writes. The example warms its learning rate up from 0, so the
step-1 parameters still equal the initial ones; the optimizer's moments carry
the first gradient.
"""

from __future__ import annotations

from pathlib import Path

from tests.runtime.runs import DIGITS, checkpoint_hashes, ledger, run_json

SEED = 0
STEP1_PARAMS = "c6136f051efd26d0"
STEP1_OPT = "337b5606f6d0fe9d"
STEP1_FULL_HASH = "8bdc99a11e04ea438c6352751491b3b3"

WHAT_TO_DO = (
    "the digits MLP's first step no longer gives the recorded bits. If the change "
    "was not meant to change the math, find what did. If it was (a new optimizer "
    "default, hashing, initialisation...), re-record the constants of "
    "tests/runtime/test_golden_step.py from `exp run examples/digits_mlp.toml "
    f"seed={SEED} --stop-at 1` (ledger step 1, checkpoint 1), re-record "
    "examples/ci/exp.lock, and say why in the commit message."
)


def test_first_step_of_the_digits_mlp_gives_the_recorded_bits(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    summary = run_json(str(DIGITS), f"seed={SEED}", "--stop-at", "1", "--run-dir", str(run_dir))
    assert (summary["outcome"], summary["step"]) == ("stopped", 1)

    params, opt, _ = ledger(run_dir)[1]
    recorded = (params, opt, checkpoint_hashes(run_dir).get(1), summary["full_hash"])
    expected = (STEP1_PARAMS, STEP1_OPT, STEP1_FULL_HASH, STEP1_FULL_HASH)
    assert recorded == expected, f"{WHAT_TO_DO}\n(params, opt, checkpoint, final hash) now {recorded}"
