"""`exp export`: a trained run as a Hugging Face folder (merged) or PEFT adapters.

The runs are real `exp run` processes of a tiny Llama with LoRA on the shipped
supervised task; the exported folders are read back through expspec's own
`kind = "pretrained"` build and through the `safetensors` package.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from expspec.compiler import plan_spec
from expspec.compiler.decoder_config import DecoderConfig
from expspec.compiler.input_files import files_digest
from expspec.compiler.tokenizer_files import tokenizer_files
from expspec.runtime.engine.checkpoint_reads import read_verified
from expspec.runtime.export import ExportError, export_run, load_trained_model
from expspec.runtime.export.merged import SAFETENSORS_METADATA, merged_state
from expspec.runtime.export.peft import target_modules
from expspec.runtime.export.staging import staged_folder
from expspec.runtime.models import apply_lora, build_model
from expspec.runtime.models.decoder import DecoderLM
from expspec.runtime.models.hf_weights import hf_state, load_hf_weights
from expspec.runtime.models.safetensors_files import write_sharded
from expspec.runtime.types import DataInfo
from expspec.spec.model import LoRA, Pretrained
from tests.conftest import EXAMPLES
from tests.helpers import to_toml
from tests.runtime.runs import DIGITS, exp, run_json, snapshot

SFT = EXAMPLES / "sft_task.toml"
_LLAMA = (
    "model={kind='llama', hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, "
    "num_key_value_heads=2, max_position_embeddings=32%s}"
)
# q_proj by name everywhere, down_proj by pattern in layer 1 only.
LORA = ", lora={rank=4, alpha=8.0, targets=['q_proj', 're:model\\.layers\\.1\\.mlp\\.down_proj']}"
TRAIN = ("train.steps=4", "train.eval_every=0", "data.batch_size=8", "checkpoint.every_steps=2")
# Fast enough that four steps move the adapters well away from their zero start.
FAST = ("optimizer.learning_rate=0.02", "optimizer.schedule={kind='constant'}")
ARGS = (_LLAMA % LORA, *TRAIN, *FAST)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny Llama trained from scratch with LoRA; its checkpoints hold everything."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    summary = run_json(str(SFT), *ARGS, "--run-dir", str(run_dir))
    assert summary["outcome"] == "finished" and summary["checkpoint"] == 4
    return run_dir


@pytest.fixture(scope="module")
def pretrained(run, tmp_path_factory) -> Path:
    """The issue's flow: `run` exported merged, then fine-tuned as `kind = "pretrained"` with
    LoRA-only checkpoints. The spec names the exported folder relative to itself (`base`)."""
    spec_dir = tmp_path_factory.mktemp("pretrained")
    export_run(run, spec_dir / "base", "merged")
    data = EXAMPLES / "data" / "sft_task"
    spec = {
        "name": "sft-pretrained",
        "model": {"kind": "pretrained", "path": "base"},
        "data": {
            "kind": "text",
            "files": str(data / "train.jsonl"),
            "tokenizer": str(data / "tokenizer"),
            "prompt_field": "prompt",
            "completion_field": "completion",
            "seq_len": 16,
            "batch_size": 8,
        },
        "optimizer": {"kind": "adamw", "learning_rate": 0.02},
        "train": {"steps": 4},
        "checkpoint": {"every_steps": 2, "save": "lora"},
    }
    text = to_toml(spec) + "\n[model.lora]\nrank = 2\nalpha = 4.0\ntargets = ['re:.*self_attn\\.(q|v)_proj']\n"
    (spec_dir / "spec.toml").write_text(text)
    run_dir = spec_dir / "run"
    summary = run_json(str(spec_dir / "spec.toml"), "--run-dir", str(run_dir))
    assert summary["outcome"] == "finished" and summary["checkpoint"] == 4
    return run_dir


def _ids(vocab: int) -> jnp.ndarray:
    return jnp.asarray(np.random.default_rng(0).integers(0, vocab, size=(2, 12)), jnp.int32)


def _flat(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Leaves by path, list indices as strings (Orbax restores lists as dicts keyed "0", "1", ...)."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}"
        out.update(_flat(value, path) if isinstance(value, dict) else {path: np.asarray(value)})
    return out


def _pretrained(folder: Path) -> nnx.Module:
    """The folder loaded as `[model] kind = "pretrained"` loads it."""
    info = DataInfo(task="lm", vocab_size=None, seq_len=16)
    return build_model(Pretrained(kind="pretrained", path=str(folder)), info, 0, search=[folder.parent])


def test_merged_export_loads_back_with_the_fine_tuned_logits(run, tmp_path):
    run = run
    before = snapshot(run)
    result = exp("export", str(run), "-o", str(tmp_path / "merged"), "--format", "merged")
    assert result.returncode == 0, result.stderr
    assert snapshot(run) == before  # the run directory is only read
    folder = tmp_path / "merged"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no staging folder left

    trained = load_trained_model(run)
    assert trained.step == 4
    # The rebuilt model holds exactly the checkpoint's bits.
    state, _ = read_verified(run / "checkpoints", 4)
    for part, which in (("params", nnx.LoRAParam), ("frozen", nnx.Not(nnx.LoRAParam))):
        held, saved = _flat(nnx.to_pure_dict(nnx.state(trained.model, which))), _flat(state[part])
        assert held.keys() == saved.keys() and all(np.array_equal(held[k], saved[k]) for k in held), part
    assert np.abs(state["params"]["model"]["layers"]["0"]["self_attn"]["q_proj"]["lora"]["lora_b"]).max() > 1e-3

    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["torch_dtype"] == "float32"
    assert config["vocab_size"] == trained.config.vocab_size and config["eos_token_id"] is not None
    # The tokenizer files are the run's, byte for byte: the same fingerprint.
    assert files_digest(tokenizer_files(folder)) == trained.plan.fingerprints.files["data.tokenizer"]

    ids = _ids(trained.config.vocab_size)
    tuned = np.asarray(trained.model(ids))
    loaded = np.asarray(_pretrained(folder)(ids))
    assert np.abs(loaded - tuned).max() < 1e-5
    # ... and the adapters mattered: the base alone computes other logits.
    assert np.abs(np.asarray(_hf_model(trained.config, hf_state(trained.model), tmp_path)(ids)) - tuned).max() > 1e-3


def _hf_model(config: DecoderConfig, tensors: dict[str, np.ndarray], tmp_path: Path) -> DecoderLM:
    """A DecoderLM loaded from `tensors` written as a Hugging Face folder."""
    folder = tmp_path / f"hf-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    write_sharded(folder, tensors, 1 << 30, SAFETENSORS_METADATA)
    model = DecoderLM(config, rngs=nnx.Rngs(1))
    load_hf_weights(model, folder)
    return model


def test_a_pretrained_lora_run_exports_against_its_base_folder(pretrained, tmp_path):
    """LoRA-only checkpoints: the base comes from the pretrained folder, proven by its fingerprint."""
    state, _ = read_verified(pretrained / "checkpoints", 4)
    assert "frozen" not in state
    export_run(pretrained, tmp_path / "peft", "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((pretrained.parent / "base").resolve())
    assert config["target_modules"] == ["q_proj", "v_proj"] and config["r"] == 2 and config["lora_alpha"] == 4
    names = load_file(str(tmp_path / "peft" / "adapter_model.safetensors")).keys()
    assert len(names) == 2 * 2 * 2 and "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight" in names

    export_run(pretrained, tmp_path / "merged", "merged")
    trained = load_trained_model(pretrained)
    ids = _ids(trained.config.vocab_size)
    tuned = np.asarray(trained.model(ids))
    assert np.abs(np.asarray(_pretrained(tmp_path / "merged")(ids)) - tuned).max() < 1e-5
    assert np.abs(np.asarray(_pretrained(pretrained.parent / "base")(ids)) - tuned).max() > 1e-3


def test_a_changed_base_folder_is_refused(pretrained, tmp_path):
    spec_dir = tmp_path / "moved"
    shutil.copytree(pretrained.parent / "base", spec_dir / "base")
    _flip_a_byte(spec_dir / "base")
    with pytest.raises(ExportError, match=r"^model\.path:model\.safetensors: .* the run trained on"):
        export_run(pretrained, tmp_path / "out", "merged", spec_dir=spec_dir)
    assert not (tmp_path / "out").exists()


def _flip_a_byte(folder: Path) -> None:
    """Flip one byte in the middle of the largest file under `folder`."""
    victim = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))


def test_peft_export_has_peft_names_shapes_and_config(run, tmp_path):
    result = export_run(run, tmp_path / "peft", "peft")
    assert [str(f) for f in result.files] == ["adapter_config.json", "adapter_model.safetensors"]
    tensors = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers"
    expected = {
        f"{prefix}.0.self_attn.q_proj.lora_A.weight": (4, 32),
        f"{prefix}.0.self_attn.q_proj.lora_B.weight": (32, 4),
        f"{prefix}.1.self_attn.q_proj.lora_A.weight": (4, 32),
        f"{prefix}.1.self_attn.q_proj.lora_B.weight": (32, 4),
        f"{prefix}.1.mlp.down_proj.lora_A.weight": (4, 64),  # [rank, in]
        f"{prefix}.1.mlp.down_proj.lora_B.weight": (32, 4),  # [out, rank]
    }
    assert {k: v.shape for k, v in tensors.items()} == expected
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config == {
        "base_model_name_or_path": None,  # trained from the init stream: no Hugging Face base folder
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "peft_type": "LORA",
        "r": 4,
        "revision": None,
        # down_proj is adapted in layer 1 only, so the names alone would select too much.
        "target_modules": [
            "model.layers.0.self_attn.q_proj",
            "model.layers.1.mlp.down_proj",
            "model.layers.1.self_attn.q_proj",
        ],
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }
    # PEFT's update, W + (lora_alpha / r) * B @ A, is what the merged export folds in.
    trained = load_trained_model(run)
    base, merged = hf_state(trained.model), merged_state(trained.model)
    name = "model.layers.1.mlp.down_proj"
    update = tensors[f"base_model.model.{name}.lora_B.weight"] @ tensors[f"base_model.model.{name}.lora_A.weight"]
    np.testing.assert_allclose(merged[f"{name}.weight"], base[f"{name}.weight"] + 2.0 * update, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_folding_adapters_keeps_the_logits(family, tmp_path):
    """Without a run: random adapters on every kind of projection, folded, loaded back."""
    config = DecoderConfig(
        family=family,
        vocab_size=40,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=family == "qwen2",
        attention_bias=family == "qwen2",
        qk_norm=family == "qwen3",
    )
    model = DecoderLM(config, rngs=nnx.Rngs(0))
    tied = {"lm_head"} if config.tie_word_embeddings else set()
    targets = ("q_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "lm_head")
    model = apply_lora(model, LoRA(rank=2, alpha=3.0, targets=targets), seed=1)
    adapters = nnx.state(model, nnx.LoRAParam)
    # lora_b starts at zero; give every adapter a value so that folding shows.
    noise = iter(np.random.default_rng(2).normal(0, 0.3, size=10_000).astype(np.float32))
    nnx.update(
        model,
        nnx.map_state(lambda _, v: jnp.asarray(np.fromiter(noise, np.float32, v.size).reshape(v.shape)), adapters),
    )
    ids = _ids(40)
    expected = np.asarray(model(ids))
    folded = _hf_model(config, merged_state(model), tmp_path)
    assert np.abs(np.asarray(folded(ids)) - expected).max() < 1e-5
    assert np.abs(np.asarray(_hf_model(config, hf_state(model), tmp_path)(ids)) - expected).max() > 1e-2
    names = {"down_proj", "gate_proj", "o_proj", "q_proj", "v_proj"} | ({"lm_head"} - tied)
    assert target_modules(model) == sorted(names)


def test_sharded_merged_export_loads_back(run, tmp_path):
    export_run(run, tmp_path / "sharded", "merged", max_shard_bytes=20_000)
    files = sorted(p.name for p in (tmp_path / "sharded").glob("model*"))
    assert "model.safetensors.index.json" in files and len(files) > 3
    trained = load_trained_model(run)
    ids = _ids(trained.config.vocab_size)
    assert np.abs(np.asarray(_pretrained(tmp_path / "sharded")(ids)) - np.asarray(trained.model(ids))).max() < 1e-5


def test_the_newest_verified_checkpoint_is_exported(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _flip_a_byte(copy / "checkpoints" / "4" / "state")
    result = export_run(copy, tmp_path / "out", "peft")
    assert result.step == 2 and list(result.skipped) == [4]
    with pytest.raises(ExportError, match=r"checkpoints/4: checkpoint 4 is unreadable"):
        export_run(copy, tmp_path / "out4", "peft", step=4)
    assert not (tmp_path / "out4").exists()


def _plan_dir(tmp_path: Path, spec: Path, *overrides: str) -> Path:
    """A run directory holding only the plan of `spec`: what export reads before anything else."""
    folder = tmp_path / "planonly"
    folder.mkdir()
    (folder / "plan.json").write_text(plan_spec(spec, list(overrides)).to_json())
    return folder


@pytest.mark.parametrize(
    ("make", "fmt", "message"),
    [
        (lambda t, r: (t / "nowhere", {}), "merged", r"nowhere: no such run directory"),
        (lambda t, r: (t, {}), "merged", r"no plan\.json; is this a run directory\?"),
        (lambda t, r: (r, {"step": 3}), "merged", r"--step 3: no checkpoint at that step .*\(it has steps 2, 4\)"),
        (lambda t, r: (_plan_dir(t, DIGITS), {}), "merged", r"model\.kind: 'mlp' runs cannot be exported; .*'llama'"),
        (lambda t, r: (_plan_dir(t, SFT, _LLAMA % ""), {}), "peft", r"trained no LoRA adapters"),
        (lambda t, r: (_plan_dir(t, SFT, *ARGS), {}), "merged", r"no committed checkpoint to export"),
    ],
    ids=["absent", "not-a-run", "step-absent", "not-a-decoder", "peft-without-lora", "no-checkpoint"],
)
def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, make, fmt, message):
    run_dir, options = make(tmp_path, run)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=message) as err:
        export_run(run_dir, out, fmt, **options)
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_changed_tokenizer_is_refused(run, tmp_path):
    spec_dir = tmp_path / "spec"
    shutil.copytree(EXAMPLES / "data" / "sft_task" / "tokenizer", spec_dir / "data" / "sft_task" / "tokenizer")
    config = spec_dir / "data" / "sft_task" / "tokenizer" / "tokenizer_config.json"
    config.write_text(config.read_text().replace("}", ', "model_max_length": 7}', 1))
    with pytest.raises(ExportError, match=r"data\.tokenizer: .* the run trained on"):
        export_run(run, tmp_path / "out", "merged", spec_dir=spec_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"^data\.tokenizer: .*no such file or folder.*--spec-dir names another"):
        export_run(run, tmp_path / "out", "merged", spec_dir=tmp_path / "empty")
    assert not (tmp_path / "out").exists()


def test_a_full_output_folder_is_refused_and_left_alone(run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = exp("export", str(run), "-o", str(out), "--format", "peft")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{out}: output folder exists and is not empty; name a new or empty folder"
    ]
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_folder(out) as folder:
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
