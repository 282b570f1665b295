"""Low-rank adapters grafted onto named `nnx.Linear` layers of any model."""

from __future__ import annotations

import jax
from flax import nnx

from expspec.runtime.models.common import ModelError

from ...spec.model import LoRA

__all__ = ["LoRALinear", "apply_lora"]

# Separates the adapters' key stream from the base parameters' stream, which
# `nnx.Rngs(params=seed)` derives as fold_in(key(seed), 0, 1, 2, ...): with the
# same seed and no separation, adapter i would reuse base parameter i's key.
_LORA_DOMAIN = 0x4C6F5241  # "LoRA"


class LoRALinear(nnx.Module):
    """`base(x) + (alpha / rank) * lora(x)`.

    `nnx.LoRA` does not scale by alpha / rank, so the scale lives here. The base
    keeps its own `nnx.Param`s (frozen by the trainable filter); only the
    `nnx.LoRAParam`s `lora.lora_a` / `lora.lora_b` are trained. `lora_b` starts
    at zero, so at initialisation the layer equals its base.
    """

    def __init__(self, base: nnx.Linear, rank: int, alpha: float, *, rngs: nnx.Rngs, dropout: float = 0.0) -> None:
        self.base = base
        self.lora = nnx.LoRA(
            base.in_features,
            rank,
            base.out_features,
            dtype=base.dtype,
            param_dtype=base.param_dtype,
            rngs=rngs,
        )
        self.scale = float(alpha) / rank
        self.dropout = nnx.Dropout(dropout)
        self.rate = float(dropout)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """`key`: the dropout key of this site during training (None: no dropout), as a model
        that passes keys to its projections gives it; the base path never drops."""
        adapter_input = x if key is None or not self.rate else self.dropout(x, deterministic=False, rngs=key)
        return self.base(x) + self.scale * self.lora(adapter_input)


def _path_key(path: tuple) -> tuple[str, ...]:
    return tuple(str(p) for p in path)


def apply_lora(model: nnx.Module, lora: LoRA, seed: int) -> nnx.Module:
    """Wrap every `nnx.Linear` attribute named in `lora.targets` with a `LoRALinear`, in place.

    Adapters are keyed by their sorted position among the matches, so the same
    model, targets and seed always give the same adapters. A Linear reachable
    under several names gets one shared adapter, preserving the sharing.
    """
    matches: list[tuple[tuple[str, ...], nnx.Module, str, nnx.Linear]] = []
    linears: list[str] = []
    for path, parent in nnx.iter_modules(model):
        if isinstance(parent, LoRALinear):
            continue  # already adapted; its `base` must not be wrapped again
        for name, value in list(vars(parent).items()):
            if isinstance(value, nnx.Linear):
                where = _path_key(path) + (name,)
                linears.append(".".join(where))
                if lora.matches(".".join(where)):
                    matches.append((where, parent, name, value))
    if not matches:
        names = ", ".join(sorted({path.rpartition(".")[2] for path in linears}))
        example = max(linears, key=len, default="")
        raise ModelError(
            f"model.lora.targets {list(lora.targets)} match no nnx.Linear layer of the model "
            f"(its layer names: {names}; a target is a name, or 're:' + a pattern over paths like '{example}')"
        )
    matches.sort(key=lambda m: m[0])
    root = jax.random.fold_in(jax.random.key(seed), _LORA_DOMAIN)
    adapters: dict[int, LoRALinear] = {}
    for index, (_, parent, name, linear) in enumerate(matches):
        if id(linear) not in adapters:
            rngs = nnx.Rngs(params=jax.random.fold_in(root, index))
            adapters[id(linear)] = LoRALinear(linear, lora.rank, lora.alpha, rngs=rngs, dropout=lora.dropout)
        setattr(parent, name, adapters[id(linear)])
    return model
