"""`exp export --format peft`: the adapters alone, as Hugging Face's PEFT library saves them.

PEFT saves a LoRA model's adapters to `adapter_model.safetensors` under the
module's name in the wrapped model, `base_model.model.<module>.lora_A.weight`
([rank, in]) and `.lora_B.weight` ([out, rank]), and computes
`W x + (lora_alpha / r) * B A x`. nnx's `LoRA` keeps `lora_a` [in, rank] and
`lora_b` [rank, out] and computes `x A B` with the same scale, so PEFT's A and B
are ours transposed. `adapter_config.json` carries `LoraConfig`'s fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from expspec.runtime.export.merged import SAFETENSORS_METADATA, adapters
from expspec.runtime.export.trained import ExportError, TrainedModel
from expspec.runtime.models.hf_weights import hf_name
from expspec.runtime.models.lora import LoRALinear
from expspec.runtime.models.safetensors_files import write_safetensors

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "PEFT_PREFIX", "adapter_config", "adapter_tensors", "write_peft"]

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
"""PEFT's name for the wrapped model inside its `PeftModel` (`model.base_model.model`)."""


def adapter_tensors(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every adapter's two factors under PEFT's names, in PEFT's layout."""
    tensors = {}
    for module_name, layer in adapters(model):
        prefix = f"{PEFT_PREFIX}{module_name}"
        tensors[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(np.asarray(layer.lora.lora_a[...]).T)
        tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(np.asarray(layer.lora.lora_b[...]).T)
    return tensors


def _linear_modules(model: nnx.Module) -> set[str]:
    """Hugging Face module names of every projection a target could name (adapted or not)."""
    out = set()
    for path, module in nnx.iter_modules(model):
        parts = tuple(str(p) for p in path)
        if isinstance(module, LoRALinear) or (isinstance(module, nnx.Linear) and parts[-1:] != ("base",)):
            out.add(hf_name((*parts, "kernel"))[0].removesuffix(".weight"))
    return out


def target_modules(model: nnx.Module) -> list[str]:
    """PEFT's `target_modules` for exactly the adapted layers: their attribute names (`q_proj`)
    when those select no other projection, else the full module names, which PEFT matches exactly."""
    adapted = {name for name, _ in adapters(model)}
    short = sorted({name.rsplit(".", 1)[-1] for name in adapted})
    named = {m for m in _linear_modules(model) if m.rsplit(".", 1)[-1] in short}
    return short if named == adapted else sorted(adapted)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def adapter_config(trained: TrainedModel) -> dict[str, Any]:
    """`adapter_config.json`: the run's LoRA settings under `LoraConfig`'s keys."""
    spec = trained.plan.spec.model
    lora = spec.lora
    assert lora is not None  # checked by the caller
    base = None
    if spec.kind == "pretrained":
        from expspec.runtime.models.pretrained import model_folder

        base = str(model_folder(spec, trained.spec_dir).resolve())
    return {
        "base_model_name_or_path": base,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "lora_alpha": _number(lora.alpha),
        "lora_dropout": float(lora.dropout),
        "peft_type": "LORA",
        "r": lora.rank,
        "revision": None,
        "target_modules": target_modules(trained.model),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }


def write_peft(trained: TrainedModel, folder: Path) -> list[Path]:
    """Write the adapters and their config into the (empty) `folder`; returns the files written."""
    if trained.plan.spec.model.lora is None:
        raise ExportError(f"{trained.run_dir}: the run trained no LoRA adapters; export it with --format merged")
    folder = Path(folder)
    config = folder / ADAPTER_CONFIG
    config.write_text(json.dumps(adapter_config(trained), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    weights = folder / ADAPTER_WEIGHTS
    write_safetensors(weights, adapter_tensors(trained.model), SAFETENSORS_METADATA)
    return [config, weights]
