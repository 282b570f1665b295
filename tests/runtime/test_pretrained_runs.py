"""Fine-tuning a Hugging Face model folder: LoRA by pattern, LoRA-only checkpoints, pinned base
weights, a sharded mesh, and the audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.runtime.pretrained_folder import TEXT_TOKENIZER, write_pretrained_folder
from tests.runtime.runs import exp, ledger, run_json

SPEC = """\
name = "ft"
seed = 0

[model]
kind = "pretrained"
path = "base"

[model.lora]
rank = 4
alpha = 8.0
targets = ["re:.*self_attn\\\\.(q|v)_proj"]

[data]
kind = "text"
files = "{data}/train.jsonl"
eval_files = "{data}/eval.jsonl"
tokenizer = "base"
prompt_field = "prompt"
completion_field = "completion"
seq_len = 16
batch_size = 8

[optimizer]
kind = "adamw"
learning_rate = 1e-2

[train]
steps = 6
eval_every = 0

[checkpoint]
every_steps = 2
save = "lora"
"""


def _spec(folder: Path, **base: object) -> Path:
    write_pretrained_folder(folder / "base", **base)
    spec = folder / "ft.toml"
    spec.write_text(SPEC.format(data=(EXAMPLES / "data" / "sft_task").as_posix()))
    return spec


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_lora_by_pattern_trains_only_the_attention_adapters_and_pins_the_base(tmp_path):
    spec = _spec(tmp_path)
    summary = run_json(str(spec), "--run-dir", str(tmp_path / "run"))
    assert summary["outcome"] == "finished"
    leaves = [json.loads(line) for line in (tmp_path / "run" / "ledger.jsonl").read_text().splitlines()]
    trained = next(r for r in leaves if r["kind"] == "leaves")["params"]
    assert trained and all("self_attn" in p and "/lora/" in p for p in trained)
    assert {p.split("/")[-3] for p in trained} == {"q_proj", "v_proj"}
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert set(plan["fingerprints"]["files"]) >= {"model.path:config.json", "model.path:model.safetensors"}

    # The base weights changed under the run: resuming it is refused, naming the file.
    base = tmp_path / "base" / "model.safetensors"
    raw = bytearray(base.read_bytes())
    raw[-1] ^= 1
    base.write_bytes(bytes(raw))
    again = exp("run", str(spec), "train.steps=8", "--run-dir", str(tmp_path / "run"))
    assert again.returncode == 2, again.stderr
    (line,) = again.stderr.strip().splitlines()
    assert "model.safetensors" in line


def test_a_lora_only_checkpoint_is_20x_smaller_than_a_full_fine_tune(tmp_path):
    # The shapes of examples/sft_lora.toml: its base (pretrain_tiny_llama.toml, the text tokenizer)
    # and its adapters (rank 8 on the attention projections), against fine-tuning every weight.
    spec = _spec(tmp_path, hidden=128, intermediate=344, layers=4, heads=4, kv_heads=2, tokenizer=TEXT_TOKENIZER)
    text = spec.read_text().replace("rank = 4", "rank = 8").replace("(q|v)", "(q|k|v|o)")
    spec.write_text(text)
    whole = tmp_path / "whole.toml"
    whole.write_text(
        text.split("[model.lora]")[0] + "[data]" + text.split("[data]")[1].replace('save = "lora"', 'save = "full"')
    )
    args = ("train.steps=2", "checkpoint.every_steps=2", "data.seq_len=16")
    run_json(str(spec), *args, "--run-dir", str(tmp_path / "lora"))
    run_json(str(whole), *args, "--run-dir", str(tmp_path / "full"))
    run_json(str(spec), *args, 'checkpoint.save="full"', "--run-dir", str(tmp_path / "copied"))
    lora, full = _size(tmp_path / "lora" / "checkpoints"), _size(tmp_path / "full" / "checkpoints")
    assert full >= 20 * lora, (full, lora)
    # Saving the frozen base too never changes the bits, only the size.
    assert ledger(tmp_path / "copied") == ledger(tmp_path / "lora")
    assert _size(tmp_path / "copied" / "checkpoints") > 5 * lora


def test_fsdp_over_two_devices_trains_the_same_fine_tune(tmp_path, monkeypatch):
    spec = _spec(tmp_path)
    one = run_json(str(spec), "--run-dir", str(tmp_path / "one"))
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    two = run_json(str(spec), "mesh.fsdp=2", "--run-dir", str(tmp_path / "two"))
    assert two["outcome"] == "finished" and two["step"] == one["step"]
    layout = [json.loads(line) for line in (tmp_path / "two" / "events.jsonl").read_text().splitlines()]
    sharded = next(e for e in layout if e["event"] == "layout")["sharded"]
    assert any("frozen" in path and "embed_tokens" in path for path in sharded)  # the base weights are split


@pytest.mark.parametrize("cut", ["--stop-at", pytest.param("--kill", marks=pytest.mark.slow)])
def test_the_audit_proves_the_fine_tune_and_the_lock_records_the_base(tmp_path, cut):
    spec = _spec(tmp_path)
    flags = ["--kill"] if cut == "--kill" else []
    audit = exp("audit", str(spec), "--steps", "6", *flags, timeout=600)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    if cut == "--kill":
        return
    lock = exp("lock", str(spec), "--steps", "4", "-o", str(tmp_path / "ft.lock"), timeout=600)
    assert lock.returncode == 0, lock.stderr
    entry = json.loads((tmp_path / "ft.lock").read_text())["entries"][0]
    assert {"model.path:model.safetensors", "model.path:config.json", "data.tokenizer", "data"} <= set(entry["inputs"])
    shutil.rmtree(tmp_path / "base")
    write_pretrained_folder(tmp_path / "base", seed=1)
    verdict = exp("audit", "--lock", str(tmp_path / "ft.lock"), "--json", str(tmp_path / "v.json"), timeout=600)
    assert verdict.returncode == 1
    (check,) = json.loads((tmp_path / "v.json").read_text())["checks"]
    assert check["kind"] == "input_changed" and "model.path:model.safetensors" in check["details"]["inputs"]


def test_eval_generate_reports_exact_match_and_needs_a_decoder(tmp_path):
    spec = _spec(tmp_path)
    summary = run_json(str(spec), "train.eval_generate=8", "--run-dir", str(tmp_path / "run"))
    assert 0.0 <= summary["eval"]["exact_match"] <= 1.0
    refused = exp("run", str(EXAMPLES / "sft_task.toml"), "train.eval_generate=8", "--run-dir", str(tmp_path / "t"))
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "train.eval_generate" in line and not (tmp_path / "t").exists()
