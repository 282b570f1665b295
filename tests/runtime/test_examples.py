"""The bundled examples train for real and reach what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from exp.compiler import plan_spec
from exp.runtime.data import build_data
from tests.conftest import EXAMPLES
from tests.runtime.runs import DIGITS, LORA, TRANSFORMER, exp, run_json

SMALL = ("model.d_model=64", "model.d_ff=256", "model.max_len=64", "data.seq_len=64")


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_digits_example_reaches_95_percent(tmp_path):
    summary = run_json(str(DIGITS), "--run-dir", str(tmp_path))
    assert summary["outcome"] == "finished" and summary["step"] == 600
    assert summary["eval"]["accuracy"] >= 0.95


def _unigram_entropy(*overrides: str) -> float:
    plan = plan_spec(TRANSFORMER, list(overrides))
    return build_data(plan.spec.data, plan.seeds, TRANSFORMER.parent).unigram_entropy()


def test_char_transformer_learns_more_than_byte_frequencies(tmp_path):
    entropy = _unigram_entropy(*SMALL)
    summary = run_json(str(TRANSFORMER), *SMALL, "train.steps=150", "--run-dir", str(tmp_path))
    assert summary["eval"]["loss"] < entropy - 0.5, (summary["eval"], entropy)


@pytest.mark.slow
def test_full_char_transformer_example(tmp_path):
    summary = run_json(str(TRANSFORMER), "--run-dir", str(tmp_path), timeout=3600)
    assert summary["eval"]["loss"] < _unigram_entropy() - 1.0


def test_lora_trains_adapters_only_and_saves_10x_less(tmp_path):
    short = ("train.steps=3", "data.seq_len=16", "data.batch_size=4", "train.eval_every=0")
    run_json(str(TRANSFORMER), *short, "--run-dir", str(tmp_path / "base"))
    lora = run_json(
        str(LORA),
        *short,
        f'model.lora.init_from="{tmp_path / "base"}"',
        "optimizer.schedule.warmup_steps=1",
        "--run-dir",
        str(tmp_path / "lora"),
    )
    assert lora["outcome"] == "finished"
    full_bytes = _dir_bytes(tmp_path / "base" / "checkpoints" / "3")
    lora_bytes = _dir_bytes(tmp_path / "lora" / "checkpoints" / "3")
    assert full_bytes >= 10 * lora_bytes, (full_bytes, lora_bytes)


def test_custom_example_runs_only_with_allowance(tmp_path):
    spec = EXAMPLES / "custom" / "sines.toml"
    refused = exp("run", str(spec), "--run-dir", str(tmp_path))
    assert refused.returncode == 2 and "--allow-import lab" in refused.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    summary = run_json(str(spec), "--allow-import", "lab", "--run-dir", str(tmp_path))
    assert summary["outcome"] == "finished"
    assert summary["eval"]["mse"] < 0.25  # sin(3x) has variance 0.5; an untrained model does not get here
