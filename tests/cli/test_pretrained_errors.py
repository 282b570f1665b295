"""A model folder that cannot be fine-tuned: one line naming the key and file, exit 2, nothing created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.runtime.pretrained_folder import write_pretrained_folder
from tests.runtime.runs import exp

SPEC = f"""\
name = "ft"
[model]
kind = "pretrained"
path = "base"
[model.lora]
targets = ["re:.*self_attn\\\\.(q|v)_proj"]
[data]
kind = "text"
files = "{(EXAMPLES / "data" / "sft_task" / "train.jsonl").as_posix()}"
tokenizer = "base"
prompt_field = "prompt"
completion_field = "completion"
seq_len = 16
batch_size = 8
[optimizer]
kind = "adamw"
learning_rate = 1e-3
[train]
steps = 2
"""


def _config(folder: Path, **changes: object) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _no_config(base: Path) -> None:
    (base / "config.json").unlink()


def _truncated(base: Path) -> None:
    weights = base / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


CASES = {
    "no config.json": (_no_config, ("model.path", "config.json")),
    "unsupported architecture": (
        lambda base: _config(base, architectures=["GPT2LMHeadModel"]),
        ("architectures", "GPT2LMHeadModel", "Qwen3ForCausalLM"),
    ),
    "sliding window": (
        lambda base: _config(base, architectures=["MistralForCausalLM"], sliding_window=16),
        ("sliding_window",),
    ),
    "truncated shard": (_truncated, ("model.safetensors",)),
    "shape against the config": (
        lambda base: _config(base, intermediate_size=48),
        ("mlp", "model.safetensors", "shape"),
    ),
    "LoRA pattern matching nothing": (None, ("model.lora.targets", "q_proj")),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_bad_model_folder_is_one_line_exit_2_and_creates_nothing(tmp_path, case):
    damage, expected = CASES[case]
    base = write_pretrained_folder(tmp_path / "base")
    spec = tmp_path / "ft.toml"
    text = SPEC if damage else SPEC.replace("(q|v)_proj", "(query|value)")
    spec.write_text(text)
    if damage:
        damage(base)
    run_dir = tmp_path / "run"
    result = exp("run", str(spec), "--run-dir", str(run_dir))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, lines
    assert all(word in lines[0] for word in expected), lines[0]
    assert not run_dir.exists()
