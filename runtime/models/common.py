"""Pieces every model family shares: the error type, dtypes, activations, dropout keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from expspec.errors import BadInput

__all__ = ["ACTIVATIONS", "BuildContext", "ModelError", "layer_key", "parse_dtype", "require_key"]


class ModelError(BadInput):
    """A model cannot be built from its spec and data (a user-facing problem, not a bug)."""


_DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    # Exact erf GELU: the tanh approximation would make results depend on
    # which formula a library version picks by default.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "tanh": jnp.tanh,
    "silu": jax.nn.silu,
}


def parse_dtype(name: str) -> Any:
    """The JAX dtype a precision string names; unknown names are a spec problem."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ModelError(f"unknown dtype '{name}'; expected one of {sorted(_DTYPES)}") from None


@dataclass(frozen=True)
class BuildContext:
    """Everything a builder needs besides the spec and the data description.

    Bundled so that adding a model family never changes the builders' signature.
    """

    init_seed: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    allow_imports: Sequence[str] = ()
    search: Sequence[Path] = field(default_factory=tuple)


def require_key(train: bool, key: jax.Array | None, rate: float) -> None:
    """Fail early with a clear message instead of deep inside `nnx.Dropout`."""
    if train and rate > 0.0 and key is None:
        raise ValueError("train=True with dropout > 0 needs a dropout key")


def layer_key(key: jax.Array | None, index: int) -> jax.Array | None:
    """A key of its own for dropout site `index`, so no two sites share a mask."""
    return None if key is None else jax.random.fold_in(key, index)
