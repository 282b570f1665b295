"""The `llama`, `qwen2` and `qwen3` families: decoder-only language models as Hugging Face computes them.

The module tree mirrors `transformers`' `LlamaForCausalLM` / `Qwen2ForCausalLM` /
`Qwen3ForCausalLM` attribute for attribute (`model.layers.3.self_attn.q_proj`), so
that a parameter's state path names its Hugging Face tensor by a fixed rule
(`hf_weights.py`) and LoRA patterns written for Hugging Face paths match here.
The math follows the same code: RMSNorm and RoPE in float32, the rotate-half RoPE
convention, softmax in float32, SwiGLU.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from expspec.compiler.decoder_config import DecoderConfig
from expspec.runtime.models.common import BuildContext, ModelError, layer_key
from expspec.runtime.models.lora import LoRALinear
from expspec.runtime.types import DataInfo

from ...spec.model import Decoder

__all__ = ["DecoderLM", "RMSNorm", "build_decoder", "rope_inv_freq"]

Cache = dict[str, Any]
"""`{"layers": [{"k": [B, L, kv_heads, head_dim], "v": ...}, ...]}` in the compute dtype."""

# Per-layer projection sites, each with its own LoRA-dropout key.
_SITES = {"q_proj": 0, "k_proj": 1, "v_proj": 2, "o_proj": 3, "gate_proj": 4, "up_proj": 5, "down_proj": 6}

_INIT = nnx.initializers.normal(0.02)


def rope_inv_freq(head_dim: int, theta: float, scaling: dict[str, Any] | None) -> np.ndarray:
    """RoPE's inverse frequencies [head_dim / 2] (float32), with Hugging Face's `linear` or `llama3` scaling."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (1.0 / (np.float32(theta) ** exponents)).astype(np.float32)
    kind = None if scaling is None else scaling.get("rope_type", scaling.get("type"))
    if kind is None or kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return (inv_freq / np.float32(factor)).astype(np.float32)
    if kind != "llama3":
        raise ModelError(f"rope_scaling: type {kind!r} not supported (linear, llama3)")
    # transformers' `_compute_llama3_parameters`, step for step.
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_context = float(scaling["original_max_position_embeddings"])
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    wavelen = (2 * math.pi / inv_freq).astype(np.float32)
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / np.float32(factor), inv_freq).astype(np.float32)
    smooth = ((old_context / wavelen - low) / (high - low)).astype(np.float32)
    smoothed = ((1 - smooth) * scaled / np.float32(factor) + smooth * scaled).astype(np.float32)
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


class RMSNorm(nnx.Module):
    """`weight * x / rms(x)`, normalised in float32 and scaled in the input's dtype (as Hugging Face)."""

    def __init__(self, dim: int, eps: float, *, param_dtype: Any) -> None:
        self.weight = nnx.Param(jnp.ones((dim,), param_dtype))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(jnp.float32)
        h = h * lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(x.dtype) * h.astype(x.dtype)


def _project(layer: nnx.Module, x: jax.Array, key: jax.Array | None, site: int) -> jax.Array:
    """Call a projection; a `LoRALinear` gets a dropout key of its own site while training."""
    if key is not None and isinstance(layer, LoRALinear):
        return layer(x, key=layer_key(key, site))
    return layer(x)


def _rotate(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """RoPE, rotate-half convention: x [B, T, heads, D], cos/sin [B, T, D]."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


class Attention(nnx.Module):
    """Grouped-query self-attention (`self_attn`): q/k/v/o projections, optional q/k RMSNorm."""

    def __init__(self, config: DecoderConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> None:
        c = config
        d, heads, kv = c.head_dim, c.num_attention_heads, c.num_key_value_heads

        def linear(n_in: int, n_out: int, bias: bool) -> nnx.Linear:
            return nnx.Linear(
                n_in, n_out, use_bias=bias, dtype=dtype, param_dtype=param_dtype,
                kernel_init=_INIT, bias_init=nnx.initializers.zeros, rngs=rngs,
            )  # fmt: skip

        self.q_proj = linear(c.hidden_size, heads * d, c.attention_bias)
        self.k_proj = linear(c.hidden_size, kv * d, c.attention_bias)
        self.v_proj = linear(c.hidden_size, kv * d, c.attention_bias)
        # Llama's `attention_bias` covers o_proj too; Qwen2 biases only q, k and v.
        self.o_proj = linear(heads * d, c.hidden_size, c.attention_bias and c.family != "qwen2")
        if c.qk_norm:
            self.q_norm = RMSNorm(d, c.rms_norm_eps, param_dtype=param_dtype)
            self.k_norm = RMSNorm(d, c.rms_norm_eps, param_dtype=param_dtype)
        self.qk_norm = c.qk_norm
        self.heads, self.kv_heads, self.head_dim = heads, kv, d

    def __call__(
        self,
        x: jax.Array,
        rope: tuple[jax.Array, jax.Array],
        allowed: jax.Array,
        key: jax.Array | None,
        cache: dict[str, jax.Array] | None = None,
        start: jax.Array | int = 0,
    ) -> tuple[jax.Array, dict[str, jax.Array] | None]:
        """(output [B, T, hidden], updated cache); `allowed` [B, T, S] says which keys each query sees."""
        b, t, _ = x.shape
        d, kv = self.head_dim, self.kv_heads
        q = _project(self.q_proj, x, key, _SITES["q_proj"]).reshape(b, t, self.heads, d)
        k = _project(self.k_proj, x, key, _SITES["k_proj"]).reshape(b, t, kv, d)
        v = _project(self.v_proj, x, key, _SITES["v_proj"]).reshape(b, t, kv, d)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = (r.astype(q.dtype) for r in rope)  # as Hugging Face: RoPE in the compute dtype
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if cache is not None:
            k = lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, start, 0, 0))
            v = lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, start, 0, 0))
            cache = {"k": k, "v": v}
        # Query head h reads key/value head h // group, as Hugging Face's `repeat_kv`.
        grouped = q.reshape(b, t, kv, self.heads // kv, d)
        scores = jnp.einsum("btkgd,bskd->bkgts", grouped, k, preferred_element_type=jnp.float32)
        scores = scores * (d**-0.5)
        scores = jnp.where(allowed[:, None, None], scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        mixed = jnp.einsum("bkgts,bskd->btkgd", weights, v).reshape(b, t, self.heads * d)
        return _project(self.o_proj, mixed, key, _SITES["o_proj"]), cache


class MLP(nnx.Module):
    """SwiGLU feed-forward (`mlp`): `down(silu(gate(x)) * up(x))`."""

    def __init__(self, config: DecoderConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> None:
        kw = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, kernel_init=_INIT, rngs=rngs)
        self.gate_proj = nnx.Linear(config.hidden_size, config.intermediate_size, **kw)
        self.up_proj = nnx.Linear(config.hidden_size, config.intermediate_size, **kw)
        self.down_proj = nnx.Linear(config.intermediate_size, config.hidden_size, **kw)

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        gate = _project(self.gate_proj, x, key, _SITES["gate_proj"])
        up = _project(self.up_proj, x, key, _SITES["up_proj"])
        return _project(self.down_proj, jax.nn.silu(gate) * up, key, _SITES["down_proj"])


class DecoderLayer(nnx.Module):
    """Pre-norm block: `x + self_attn(input_layernorm(x))`, then `x + mlp(post_attention_layernorm(x))`."""

    def __init__(self, config: DecoderConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> None:
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        self.self_attn = Attention(config, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        self.mlp = MLP(config, **kw)

    def __call__(
        self,
        x: jax.Array,
        rope: tuple[jax.Array, jax.Array],
        allowed: jax.Array,
        key: jax.Array | None,
        cache: dict[str, jax.Array] | None = None,
        start: jax.Array | int = 0,
    ) -> tuple[jax.Array, dict[str, jax.Array] | None]:
        a, cache = self.self_attn(self.input_layernorm(x), rope, allowed, key, cache, start)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x), key), cache


class DecoderModel(nnx.Module):
    """The body (`model`): token embedding, decoder layers, final RMSNorm."""

    def __init__(self, config: DecoderConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> None:
        self.embed_tokens = nnx.Embed(
            config.vocab_size, config.hidden_size, dtype=dtype, param_dtype=param_dtype,
            embedding_init=_INIT, rngs=rngs,
        )  # fmt: skip
        self.layers = nnx.List(
            DecoderLayer(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            for _ in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)


class DecoderLM(nnx.Module):
    """A causal language model of the Llama / Qwen2 / Qwen3 families, called `model(x) -> logits`.

    Packed rows pass `segments` (document number per token, 0 for padding) and
    `positions` (restarting at 0 per document): a token then attends only to
    earlier tokens of its own document, so each document is modelled as if alone.
    """

    def __init__(self, config: DecoderConfig, *, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
                 rngs: nnx.Rngs) -> None:  # fmt: skip
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.model = DecoderModel(config, **kw)
        if not config.tie_word_embeddings:
            self.lm_head = nnx.Linear(config.hidden_size, config.vocab_size, use_bias=False, kernel_init=_INIT, **kw)
        self.tied = config.tie_word_embeddings
        self.dtype = dtype
        self.layer_count = config.num_hidden_layers
        self.kv_heads, self.head_dim = config.num_key_value_heads, config.head_dim
        # Static and hashable (the graph definition is a jit cache key): the RoPE frequencies as a tuple.
        self.inv_freq = tuple(float(f) for f in rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling))

    def _rope(self, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """cos, sin [B, T, head_dim] in float32, as Hugging Face's rotary embedding computes them."""
        inv_freq = jnp.asarray(self.inv_freq, jnp.float32)
        freqs = positions.astype(jnp.float32)[..., None] * inv_freq
        angles = jnp.concatenate([freqs, freqs], axis=-1)
        return jnp.cos(angles), jnp.sin(angles)

    def _run(
        self,
        x: jax.Array,
        positions: jax.Array,
        allowed: jax.Array,
        key: jax.Array | None,
        caches: list[dict[str, jax.Array]] | None,
        start: jax.Array | int,
    ) -> tuple[jax.Array, list[dict[str, jax.Array] | None]]:
        """Logits (float32) and each layer's updated cache (None without caches)."""
        h = self.model.embed_tokens(x)
        rope = self._rope(jnp.broadcast_to(positions, x.shape))
        new_caches = []
        for i, layer in enumerate(self.model.layers):
            h, cache = layer(h, rope, allowed, layer_key(key, i), None if caches is None else caches[i], start)
            new_caches.append(cache)
        h = self.model.norm(h)
        if self.tied:
            logits = self.model.embed_tokens.attend(h)
        else:
            logits = _project(self.lm_head, h, layer_key(key, self.layer_count), 0)
        return logits.astype(jnp.float32), new_caches

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        segments: jax.Array | None = None,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """Logits [B, T, vocab] (float32) for tokens `x` [B, T]. `key` drives LoRA dropout while training."""
        t = x.shape[-1]
        allowed = jnp.tril(jnp.ones((t, t), dtype=bool))[None]
        if segments is not None:
            allowed = allowed & (segments[:, :, None] == segments[:, None, :])
        positions = jnp.arange(t)[None] if positions is None else positions
        logits, _ = self._run(x, positions, allowed, key if train else None, None, 0)
        return logits

    def init_cache(self, batch: int, length: int) -> Cache:
        """Empty key/value buffers for `decode`: `length` positions per row, in the compute dtype."""
        shape = (batch, length, self.kv_heads, self.head_dim)
        return {
            "layers": [{"k": jnp.zeros(shape, self.dtype), "v": jnp.zeros(shape, self.dtype)}
                       for _ in range(self.layer_count)]
        }  # fmt: skip

    def decode(
        self, x: jax.Array, *, positions: jax.Array, cache: Cache, start: jax.Array | int
    ) -> tuple[jax.Array, Cache]:
        """(logits [B, T, vocab], cache) for tokens `x` [B, T] that sit at cache slots [start, start + T).

        Their keys and values are written into the cache; each token attends to
        the slots before it (prefill with the prompt, then one token at a time).
        """
        t = x.shape[-1]
        length = cache["layers"][0]["k"].shape[1] if self.layer_count else t
        slots = jnp.arange(length)[None, :]
        allowed = (slots <= start + jnp.arange(t)[:, None])[None]
        logits, caches = self._run(x, positions, allowed, None, cache["layers"], start)
        return logits, {"layers": caches}


def build_decoder(spec: Decoder, info: DataInfo, ctx: BuildContext) -> DecoderLM:
    """A from-scratch decoder over the dataset's vocabulary, initialised from the `init` stream."""
    if info.task != "lm":
        raise ModelError(f"model.kind '{spec.kind}' needs a language-modelling dataset, got task '{info.task}'")
    vocab = spec.vocab_size or info.vocab_size
    if not vocab:
        raise ModelError(f"model.kind '{spec.kind}' needs model.vocab_size or the dataset's vocab_size")
    if info.vocab_size and vocab < info.vocab_size:
        raise ModelError(f"model.vocab_size: {vocab} is smaller than the tokenizer's vocabulary ({info.vocab_size})")
    if info.seq_len and info.seq_len > spec.max_position_embeddings:
        raise ModelError(
            f"model.max_position_embeddings: {spec.max_position_embeddings} is shorter than the "
            f"data windows ({info.seq_len} tokens)"
        )
    config = DecoderConfig.from_spec(spec, int(vocab))
    return DecoderLM(config, dtype=ctx.dtype, param_dtype=ctx.param_dtype, rngs=nnx.Rngs(params=ctx.init_seed))
