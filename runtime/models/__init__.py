"""Model construction: a registry of families keyed by `model.kind`, plus LoRA.

Every model is called as `model(x, *, train, key)`. Dropout layers hold no RNG
state; each draws its mask from a key folded out of the per-step `key`, so
`nnx.state(model)` is parameters only and a resumed run needs no RNG counter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from flax import nnx

from expspec.runtime.models.common import BuildContext, ModelError, parse_dtype
from expspec.runtime.models.custom import CustomAdapter, build_custom
from expspec.runtime.models.lora import LoRALinear, apply_lora
from expspec.runtime.models.mlp import MLPNet, build_mlp
from expspec.runtime.models.transformer import TransformerLM, build_transformer
from expspec.runtime.registry import Registry
from expspec.runtime.types import DataInfo

from ...spec.model import ModelSpec

__all__ = [
    "MODEL_BUILDERS",
    "BuildContext",
    "CustomAdapter",
    "LoRALinear",
    "MLPNet",
    "ModelError",
    "TransformerLM",
    "apply_lora",
    "build_model",
    "trainable_filter",
]

Builder = Callable[..., nnx.Module]

MODEL_BUILDERS: Registry[Builder] = Registry(
    "model.kind",
    ModelError,
    {
        "mlp": build_mlp,
        "transformer": build_transformer,
        "custom": build_custom,
        "pretrained": "expspec.runtime.models.pretrained:build_pretrained",
        **{family: "expspec.runtime.models.decoder:build_decoder" for family in ("llama", "qwen2", "qwen3")},
    },
)
"""`model.kind` -> `builder(spec, info, ctx: BuildContext) -> nnx.Module`."""


def build_model(
    spec: ModelSpec,
    info: DataInfo,
    init_seed: int,
    *,
    dtype: str = "float32",
    param_dtype: str = "float32",
    allow_imports: Sequence[str] = (),
    search: Sequence[Path] = (),
) -> nnx.Module:
    """The base model a spec describes; the same seed gives bitwise the same parameters.

    LoRA adapters are not added here: the caller loads base weights first, if
    any, then `apply_lora(model, spec.lora, lora_seed)` adds them from the
    plan's `lora` seed stream (`runtime/engine/build.py`), the one path every run takes.
    """
    builder = MODEL_BUILDERS[spec.kind]
    ctx = BuildContext(
        init_seed=init_seed,
        dtype=parse_dtype(dtype),
        param_dtype=parse_dtype(param_dtype),
        allow_imports=tuple(allow_imports),
        search=tuple(search),
    )
    return builder(spec, info, ctx)


def trainable_filter(spec: ModelSpec) -> type[nnx.Param]:
    """Which variables the optimizer updates: only the adapters when LoRA is on.

    `nnx.LoRAParam` subclasses `nnx.Param`, so the frozen complement of a LoRA
    run is `nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))`.
    """
    return nnx.LoRAParam if spec.lora is not None else nnx.Param
