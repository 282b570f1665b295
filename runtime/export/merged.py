"""`exp export --format merged`: a complete Hugging Face model folder, adapters folded in.

The folder is what `transformers` (and `[model] kind = "pretrained"`) load:
`config.json`, the weights as `model.safetensors` (sharded with an index above
`MAX_SHARD_BYTES`) under Hugging Face's tensor names in the run's param dtype,
and the run's tokenizer files. A LoRA layer computes `x @ W + (alpha / rank) *
x @ A @ B`; its exported weight is that sum's matrix, `W + (alpha / rank) * A @ B`,
formed in float64 and rounded once to the param dtype, so the folder's logits are
the fine-tuned run's (float32: to rounding, ~1e-6).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
from flax import nnx

from expspec.compiler.decoder_config import DecoderConfig
from expspec.compiler.tokenizer_files import HF_TOKENIZER_FILE, SENTENCEPIECE_FILE, tokenizer_files
from expspec.runtime.export.trained import TrainedModel
from expspec.runtime.models.hf_weights import hf_name, hf_state
from expspec.runtime.models.lora import LoRALinear
from expspec.runtime.models.safetensors_files import write_sharded

__all__ = ["MAX_SHARD_BYTES", "SAFETENSORS_METADATA", "adapters", "merged_state", "write_merged"]

MAX_SHARD_BYTES = 5 * 2**30
"""Weights above this size are split into shards (Hugging Face's customary 5 GB)."""
SAFETENSORS_METADATA = {"format": "pt"}
"""`transformers` refuses a safetensors file whose metadata does not name its format."""


def adapters(model: nnx.Module) -> list[tuple[str, LoRALinear]]:
    """(Hugging Face module name, layer) of every LoRA layer, each once, in path order."""
    out = []
    for path, module in nnx.iter_modules(model):
        if isinstance(module, LoRALinear):
            weight, _ = hf_name((*(str(p) for p in path), "base", "kernel"))
            out.append((weight.removesuffix(".weight"), module))
    return sorted(out, key=lambda item: item[0])


def merged_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every weight under its Hugging Face name in PyTorch's [out, in] layout, each LoRA
    adapter folded into its projection's weight; `model` is left as it is."""
    tensors = hf_state(model)
    for module_name, layer in adapters(model):
        name = f"{module_name}.weight"
        weight = tensors[name]  # [out, in]
        a = np.asarray(layer.lora.lora_a[...], np.float64)  # [in, rank]
        b = np.asarray(layer.lora.lora_b[...], np.float64)  # [rank, out]
        delta = layer.scale * (a @ b)  # [in, out], as nnx kernels are laid out
        tensors[name] = np.ascontiguousarray((weight.astype(np.float64) + delta.T).astype(weight.dtype))
    return tensors


def _hf_config(trained: TrainedModel) -> DecoderConfig:
    """The architecture, with a from-scratch model's BOS/EOS ids taken from the run's tokenizer."""
    config = trained.config
    if trained.plan.spec.model.kind == "pretrained" or trained.tokenizer_path is None:
        return config
    from expspec.runtime.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(trained.tokenizer_path)
    return dataclasses.replace(config, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)


def copy_tokenizer(source: Path, folder: Path) -> list[Path]:
    """The tokenizer's files copied into `folder` under the names a model folder gives them."""
    files = tokenizer_files(source)
    first = files[0]
    main = SENTENCEPIECE_FILE if first.suffix == ".model" else HF_TOKENIZER_FILE
    written = []
    for file, name in [(first, main), *((f, f.name) for f in files[1:])]:
        shutil.copyfile(file, folder / name)
        written.append(folder / name)
    return written


def write_merged(trained: TrainedModel, folder: Path, *, max_shard_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Write the Hugging Face folder into the (empty) `folder`; returns the files written."""
    folder = Path(folder)
    config = _hf_config(trained).to_hf(trained.plan.spec.train.param_dtype)
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written = [config_path]
    written += write_sharded(folder, merged_state(trained.model), max_shard_bytes, SAFETENSORS_METADATA)
    if (folder / "model.safetensors.index.json").is_file():
        written.append(folder / "model.safetensors.index.json")
    if trained.tokenizer_path is not None:
        written += copy_tokenizer(trained.tokenizer_path, folder)
    return written
