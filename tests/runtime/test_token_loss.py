"""The text loss is the mean over target tokens, however the batch is split into micro-batches."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES
from tests.runtime.runs import run_json

SFT = EXAMPLES / "sft_task.toml"


def _first_loss(run_dir) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(r["loss"] for r in records if r.get("split") == "train" and r["step"] == 1)


def test_micro_batches_with_different_target_counts_give_the_token_mean(tmp_path):
    # Completions of 1 to 4 digits put different numbers of targets in each half of a batch,
    # so a mean of the halves' means would differ from the mean over all target tokens.
    common = ("train.steps=1", "train.log_every=1", "train.eval_every=0", "data.batch_size=8")
    run_json(str(SFT), *common, "--run-dir", str(tmp_path / "whole"))
    run_json(str(SFT), *common, "train.grad_accum=4", "--run-dir", str(tmp_path / "split"))
    assert _first_loss(tmp_path / "split") == pytest.approx(_first_loss(tmp_path / "whole"), rel=1e-5)
