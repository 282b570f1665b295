"""The `transformer` family: a decoder-only (GPT-style) character language model."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from expspec.runtime.models.common import ACTIVATIONS, BuildContext, ModelError, layer_key, require_key
from expspec.runtime.types import DataInfo

from ...spec.model import Transformer

__all__ = ["Block", "CausalSelfAttention", "TransformerLM", "build_transformer"]

# Dropout sites inside a block; each gets its own key folded from the block's.
_ATTN_WEIGHTS, _ATTN_RESIDUAL, _FF_RESIDUAL = 0, 1, 2


class CausalSelfAttention(nnx.Module):
    """Multi-head attention with the projections as four named `nnx.Linear`s.

    Written out instead of using `nnx.MultiHeadAttention` so that the layers
    are called `query`, `key`, `value`, `out`: the names LoRA targets refer to.
    """

    def __init__(
        self, d_model: int, heads: int, dropout: float, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs
    ) -> None:
        def linear() -> nnx.Linear:
            return nnx.Linear(d_model, d_model, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

        self.query, self.key, self.value, self.out = linear(), linear(), linear(), linear()
        self.dropout = nnx.Dropout(dropout)
        self.heads = heads

    def __call__(
        self, x: jax.Array, *, train: bool, key: jax.Array | None, segments: jax.Array | None = None
    ) -> jax.Array:
        b, t, d = x.shape
        h = self.heads

        def split(y: jax.Array) -> jax.Array:
            return y.reshape(b, t, h, d // h)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # Scores, mask and softmax in float32: a large negative fill is only
        # safe (and the softmax only accurate) at full precision.
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores / math.sqrt(d // h)
        allowed = jnp.tril(jnp.ones((t, t), dtype=bool))[None, None]
        if segments is not None:  # packed rows: a token sees only earlier tokens of its own document
            allowed = allowed & (segments[:, None, :, None] == segments[:, None, None, :])
        scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1)
        weights = self.dropout(weights, deterministic=not train, rngs=key)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)
        return self.out(mixed.reshape(b, t, d))


class Block(nnx.Module):
    """Pre-LayerNorm decoder block: x + attn(ln(x)), then x + ff(ln(x))."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        d_ff: int,
        dropout: float,
        activation: str,
        *,
        dtype: Any,
        param_dtype: Any,
        rngs: nnx.Rngs,
    ) -> None:
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ln1 = nnx.LayerNorm(d_model, **kw)
        self.attn = CausalSelfAttention(d_model, heads, dropout, **kw)
        self.ln2 = nnx.LayerNorm(d_model, **kw)
        self.ff_in = nnx.Linear(d_model, d_ff, **kw)
        self.ff_out = nnx.Linear(d_ff, d_model, **kw)
        self.attn_dropout = nnx.Dropout(dropout)
        self.ff_dropout = nnx.Dropout(dropout)
        self.activation = activation

    def __call__(
        self, x: jax.Array, *, train: bool, key: jax.Array | None, segments: jax.Array | None = None
    ) -> jax.Array:
        det = not train
        a = self.attn(self.ln1(x), train=train, key=layer_key(key, _ATTN_WEIGHTS), segments=segments)
        x = x + self.attn_dropout(a, deterministic=det, rngs=layer_key(key, _ATTN_RESIDUAL))
        f = self.ff_out(ACTIVATIONS[self.activation](self.ff_in(self.ln2(x))))
        return x + self.ff_dropout(f, deterministic=det, rngs=layer_key(key, _FF_RESIDUAL))


class TransformerLM(nnx.Module):
    """Token + learned positional embeddings, decoder blocks, final LayerNorm, vocab head."""

    def __init__(self, spec: Transformer, vocab_size: int, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> None:
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.tok_embed = nnx.Embed(vocab_size, spec.d_model, **kw)
        self.pos_embed = nnx.Embed(spec.max_len, spec.d_model, **kw)
        self.blocks = nnx.List(
            Block(spec.d_model, spec.heads, spec.d_ff, float(spec.dropout), spec.activation, **kw)
            for _ in range(spec.layers)
        )
        self.ln_f = nnx.LayerNorm(spec.d_model, **kw)
        self.head = nnx.Linear(spec.d_model, vocab_size, **kw)
        self.max_len = spec.max_len
        self.rate = float(spec.dropout)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        segments: jax.Array | None = None,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """Logits for tokens `x` [B, T]. Packed rows pass `segments` (document number per
        token, 0 for padding) and `positions` (restarting at 0 in each document), so each
        document is modelled as if it were alone in its row."""
        require_key(train, key, self.rate)
        t = x.shape[-1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} tokens exceeds model.max_len {self.max_len}")
        h = self.tok_embed(x) + self.pos_embed(jnp.arange(t) if positions is None else positions)
        for i, block in enumerate(self.blocks):
            h = block(h, train=train, key=layer_key(key, i), segments=segments)
        return self.head(self.ln_f(h))


def build_transformer(spec: Transformer, info: DataInfo, ctx: BuildContext) -> TransformerLM:
    """A language model over the dataset's vocabulary; windows must fit `max_len`."""
    if info.task != "lm":
        raise ModelError(f"model.kind 'transformer' needs a language-modelling dataset, got task '{info.task}'")
    if not info.vocab_size:
        raise ModelError("model.kind 'transformer' needs the dataset's vocab_size")
    if info.seq_len and info.seq_len > spec.max_len:
        raise ModelError(f"data windows have {info.seq_len} tokens but model.max_len is {spec.max_len}")
    rngs = nnx.Rngs(params=ctx.init_seed)
    return TransformerLM(spec, int(info.vocab_size), dtype=ctx.dtype, param_dtype=ctx.param_dtype, rngs=rngs)
