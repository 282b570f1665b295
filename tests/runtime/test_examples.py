"""The bundled examples train for real and reach what they promise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from expspec.compiler import plan_spec
from expspec.runtime.data import build_data
from tests.conftest import EXAMPLES
from tests.runtime.runs import DIGITS, LORA, TRANSFORMER, exp, ledger, run_json, start

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


@pytest.mark.slow  # ~17 s; the packed text example's learning and resume run by default
def test_char_transformer_learns_more_than_byte_frequencies(tmp_path):
    entropy = _unigram_entropy(*SMALL)
    summary = run_json(str(TRANSFORMER), *SMALL, "train.steps=150", "--run-dir", str(tmp_path))
    assert summary["eval"]["loss"] < entropy - 0.5, (summary["eval"], entropy)


@pytest.mark.slow
def test_full_char_transformer_example(tmp_path):
    summary = run_json(str(TRANSFORMER), "--run-dir", str(tmp_path), timeout=3600)
    assert summary["eval"]["loss"] < _unigram_entropy() - 1.0


def _saved_state(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's state as host arrays, read with Orbax itself (no target: as saved)."""
    return jax.device_get(ocp.StandardCheckpointer().restore((checkpoint / "state").absolute()))


def _leaf_digests(tree: Any) -> dict[str, str]:
    """Each leaf's path and a digest of its dtype, shape and bytes."""
    digests = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(leaf)
        name = "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)
        digests[name] = hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()
    return digests


def _ledger_leaves(run_dir: Path, step: int) -> dict[str, str]:
    """Each trained parameter's fingerprint after `step` (0: as initialised), from the ledger."""
    records = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines()]
    paths = next(r for r in records if r["kind"] == "leaves")["params"]
    hexes = next(r for r in records if r["kind"] == "step" and r["step"] == step)["leaves"]
    return {path: hexes[16 * i : 16 * (i + 1)] for i, path in enumerate(paths)}


def test_lora_trains_adapters_only_and_saves_10x_less(tmp_path):
    short = ("train.steps=3", "data.seq_len=16", "data.batch_size=4", "train.eval_every=0")
    run_json(str(TRANSFORMER), *short, "--run-dir", str(tmp_path / "base"))
    lora = (str(LORA), *short, f'model.lora.init_from="{tmp_path / "base"}"', "optimizer.schedule.warmup_steps=1")
    # The same run twice, alongside: as shipped (adapters saved), and saving the frozen base too.
    shipped = start(*lora, "--run-dir", str(tmp_path / "lora"), "--json")
    whole = start(*lora, "checkpoint.save=full", "--run-dir", str(tmp_path / "whole"), "--json")
    for proc in (shipped, whole):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert json.loads(out)["outcome"] == "finished"
    full_bytes = _dir_bytes(tmp_path / "base" / "checkpoints" / "3")
    lora_bytes = _dir_bytes(tmp_path / "lora" / "checkpoints" / "3")
    assert full_bytes >= 10 * lora_bytes, (full_bytes, lora_bytes)
    assert ledger(tmp_path / "whole") == ledger(tmp_path / "lora")  # what is saved changes no step

    # The base weights the run loaded come out of training bitwise unchanged...
    before = _leaf_digests(_saved_state(tmp_path / "base" / "checkpoints" / "3")["params"])
    after = _saved_state(tmp_path / "whole" / "checkpoints" / "3")
    frozen = {path.replace("/base/", "/"): digest for path, digest in _leaf_digests(after["frozen"]).items()}
    assert frozen.keys() == before.keys(), sorted(frozen.keys() ^ before.keys())
    changed = sorted(path for path in before if frozen[path] != before[path])
    assert not changed, f"training changed frozen base weights: {changed}"
    # ...and every trained parameter is an adapter that moved away from its initial value.
    initial, trained = _ledger_leaves(tmp_path / "lora", 0), _ledger_leaves(tmp_path / "lora", 3)
    assert set(initial) == set(_leaf_digests(after["params"]))
    assert initial and all(path.rsplit("/", 1)[-1] in ("lora_a", "lora_b") for path in initial), sorted(initial)
    unmoved = sorted(path for path in initial if initial[path] == trained[path])
    assert not unmoved, f"adapters still at their initial value after 3 steps: {unmoved}"


def test_custom_example_runs_only_with_allowance(tmp_path):
    spec = EXAMPLES / "custom" / "sines.toml"
    refused = exp("run", str(spec), "--run-dir", str(tmp_path))
    assert refused.returncode == 2 and "--allow-import lab" in refused.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    summary = run_json(str(spec), "--allow-import", "lab", "--run-dir", str(tmp_path))
    assert summary["outcome"] == "finished"
    assert summary["eval"]["mse"] < 0.25  # sin(3x) has variance 0.5; an untrained model does not get here


SFT = EXAMPLES / "sft_task.toml"
TEXT_LM = EXAMPLES / "text_lm.toml"


def test_sft_example_learns_the_completions_far_below_the_uniform_baseline(tmp_path):
    # The loss counts completion tokens only; guessing uniformly over the vocabulary costs ln(V).
    vocab = build_data(plan_spec(SFT).spec.data, plan_spec(SFT).seeds, SFT.parent).info.vocab_size
    summary = run_json(str(SFT), "train.steps=200", "train.eval_every=0", "--run-dir", str(tmp_path))
    assert summary["eval"]["loss"] < 0.35 * np.log(vocab), (summary["eval"], vocab)
    assert summary["eval"]["perplexity"] == pytest.approx(np.exp(summary["eval"]["loss"]))


def test_packed_text_example_resumes_onto_the_same_bits(tmp_path):
    small = ("model.d_model=32", "model.d_ff=64", "model.max_len=32", "data.seq_len=32", "train.eval_every=0")
    straight = run_json(str(TEXT_LM), *small, "train.steps=6", "--run-dir", str(tmp_path / "straight"))
    first = exp("run", str(TEXT_LM), *small, "train.steps=6", "--stop-at", "3", "--run-dir", str(tmp_path / "resumed"))
    assert first.returncode == 0, first.stderr
    resumed = run_json(str(TEXT_LM), *small, "train.steps=6", "--run-dir", str(tmp_path / "resumed"))
    assert resumed["full_hash"] == straight["full_hash"]
    assert ledger(tmp_path / "resumed") == ledger(tmp_path / "straight")
