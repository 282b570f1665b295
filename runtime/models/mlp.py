"""The `mlp` family: a feed-forward classifier or regressor on flat features."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from expspec.runtime.models.common import ACTIVATIONS, BuildContext, ModelError, layer_key, require_key
from expspec.runtime.types import DataInfo

from ...spec.model import MLP

__all__ = ["MLPNet", "build_mlp"]


class MLPNet(nnx.Module):
    """Linear layers with an activation and dropout after every hidden layer.

    Dropout layers carry no RNG state: the caller's per-step key is folded with
    the layer index, so `nnx.state` holds parameters only and resuming never
    depends on an RNG counter.
    """

    def __init__(
        self,
        sizes: list[int],
        activation: str,
        dropout: float,
        regression: bool,
        *,
        dtype: Any,
        param_dtype: Any,
        rngs: nnx.Rngs,
    ) -> None:
        self.layers = nnx.List(
            nnx.Linear(a, b, dtype=dtype, param_dtype=param_dtype, rngs=rngs) for a, b in zip(sizes, sizes[1:])
        )
        self.dropouts = nnx.List(nnx.Dropout(dropout) for _ in sizes[1:-1])
        self.activation = activation
        self.rate = dropout
        self.regression = regression

    def __call__(self, x: jax.Array, *, train: bool = False, key: jax.Array | None = None) -> jax.Array:
        require_key(train, key, self.rate)
        act = ACTIVATIONS[self.activation]
        h = x
        for i, (layer, drop) in enumerate(zip(self.layers, self.dropouts)):
            h = drop(act(layer(h)), deterministic=not train, rngs=layer_key(key, i))
        out = self.layers[-1](h)
        return out[..., 0] if self.regression else out


def build_mlp(spec: MLP, info: DataInfo, ctx: BuildContext) -> MLPNet:
    """An MLP sized by the data: `input_dim` in, `num_classes` (or one value) out."""
    if info.task not in ("classification", "regression"):
        raise ModelError(f"model.kind 'mlp' needs a classification or regression dataset, got task '{info.task}'")
    if not info.input_dim:
        raise ModelError("model.kind 'mlp' needs the dataset's input_dim")
    regression = info.task == "regression"
    if not regression and not info.num_classes:
        raise ModelError("model.kind 'mlp' needs the dataset's num_classes for classification")
    out = 1 if regression else int(info.num_classes)
    sizes = [int(info.input_dim), *spec.hidden, out]
    return MLPNet(
        sizes,
        spec.activation,
        float(spec.dropout),
        regression,
        dtype=ctx.dtype,
        param_dtype=ctx.param_dtype,
        rngs=nnx.Rngs(params=ctx.init_seed),
    )
