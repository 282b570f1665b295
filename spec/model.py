"""The `[model]` section: which network is trained, and optional LoRA."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .fields import SpecModel, trajectory
from .rules import rule_error
from .types import Args, Fraction, NonEmptyStr, PositiveIntTuple, StrTuple, Target

__all__ = ["CustomModel", "Decoder", "LoRA", "MLP", "ModelSpec", "Pretrained", "Transformer"]

Activation = Literal["relu", "gelu", "tanh", "silu"]

_KEYED_PROJECTIONS = ("pretrained", "llama", "qwen2", "qwen3")
"""Families whose projections take a dropout key, so adapter dropout can apply."""

_PATTERN = "re:"
"""Prefix of a LoRA target that is a regular expression over module paths."""


class LoRA(SpecModel):
    """Low-rank adapters on named layers; only the adapters are trained."""

    rank: int = trajectory(8, gt=0, le=4096)
    """Rank of each adapter's two factors."""
    alpha: float = trajectory(16.0, gt=0, le=1e6)
    """Scale numerator: the adapter output is multiplied by `alpha / rank`."""
    targets: StrTuple = trajectory(min_length=1)
    """The layers that get adapters: attribute names inside the model (`query`, `q_proj`), or
    regular expressions over module paths written `re:` + pattern, matched in full against
    paths such as `model.layers.3.self_attn.q_proj` (`re:.*self_attn\\.(q|v)_proj`)."""
    dropout: Fraction = trajectory(0.0)
    """Dropout on each adapter's input during training (keys from the `dropout` stream);
    built-in decoder families only."""
    init_from: NonEmptyStr | None = trajectory(None, path=True)
    """Run directory (latest checkpoint) or checkpoint folder of a base run whose parameters
    are loaded before LoRA training starts. Without it the base weights come from the `init`
    stream. Relative paths resolve against the folder of the spec file that wrote them."""

    @model_validator(mode="after")
    def _patterns_compile(self) -> LoRA:
        for i, target in enumerate(self.targets):
            if target.startswith(_PATTERN):
                try:
                    re.compile(target[len(_PATTERN) :])
                except re.error as err:
                    raise rule_error(("targets", i), f"not a regular expression: {err}", got=target) from None
        return self

    def matches(self, path: str) -> bool:
        """Whether the layer at dotted module path `path` (`model.layers.0.self_attn.q_proj`)
        gets an adapter: a plain target names its last part, a `re:` target all of it."""
        name = path.rpartition(".")[2]
        for target in self.targets:
            if target.startswith(_PATTERN):
                if re.fullmatch(target[len(_PATTERN) :], path):
                    return True
            elif target == name:
                return True
        return False


class _Model(SpecModel):
    lora: LoRA | None = trajectory(None)
    """Train low-rank adapters instead of the full network."""

    @model_validator(mode="after")
    def _adapter_dropout_where_keys_reach(self) -> _Model:
        # Only the decoder families hand each projection its own dropout key.
        kind = getattr(self, "kind", None)
        if self.lora is not None and self.lora.dropout and kind not in _KEYED_PROJECTIONS:
            raise rule_error(
                ("lora", "dropout"),
                f"adapter dropout needs model.kind {' or '.join(_KEYED_PROJECTIONS)}; set 0 for '{kind}'",
                got=self.lora.dropout,
            )
        return self


class MLP(_Model):
    """A multi-layer perceptron classifier or regressor."""

    kind: Literal["mlp"] = trajectory()
    """Model family."""
    hidden: PositiveIntTuple = trajectory((256, 256), max_length=64)
    """Width of each hidden layer, input side first."""
    activation: Activation = trajectory("relu")
    """Non-linearity between layers."""
    dropout: Fraction = trajectory(0.0)
    """Dropout rate after each hidden layer during training (keys from the `dropout` stream)."""


class Transformer(_Model):
    """A decoder-only language model with causal self-attention."""

    kind: Literal["transformer"] = trajectory()
    """Model family."""
    layers: int = trajectory(2, gt=0, le=1024)
    """Number of decoder blocks."""
    d_model: int = trajectory(128, gt=0, le=65536)
    """Width of the residual stream."""
    heads: int = trajectory(4, gt=0, le=1024)
    """Attention heads per block; must divide `d_model`."""
    d_ff: int = trajectory(512, gt=0, le=262144)
    """Hidden width of each block's feed-forward layer."""
    max_len: int = trajectory(256, gt=0, le=1 << 20)
    """Longest sequence the positional embedding covers."""
    dropout: Fraction = trajectory(0.1)
    """Dropout rate on attention weights and residual branches during training."""
    activation: Activation = trajectory("gelu")
    """Non-linearity of the feed-forward layers."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Transformer:
        if self.d_model % self.heads:
            raise rule_error(
                "heads",
                f"must divide model.d_model ({self.d_model}); pick a divisor of d_model",
                got=self.heads,
            )
        return self


class Pretrained(_Model):
    """A Hugging Face model folder: `config.json` (Llama, Mistral, Qwen2 or Qwen3 causal LM)
    and its `*.safetensors` weights, loaded as the starting point."""

    kind: Literal["pretrained"] = trajectory()
    """Model family: whatever the folder's `config.json` names."""
    path: NonEmptyStr = trajectory(path=True)
    """The model folder; relative paths resolve against the spec file's folder. The bytes of
    its config and weight files enter the trajectory fingerprint."""


class Decoder(_Model):
    """A Llama, Qwen2 or Qwen3 decoder built from scratch, with Hugging Face's field names, so
    that `exp export --format merged` writes a folder `kind = "pretrained"` (and
    `transformers`) load."""

    kind: Literal["llama", "qwen2", "qwen3"] = trajectory()
    """Model family: `llama` (RMSNorm, SwiGLU, RoPE, grouped-query attention), `qwen2` (and
    biased q/k/v projections), `qwen3` (and RMSNorm on queries and keys)."""
    vocab_size: int | None = trajectory(None, gt=0, le=1 << 22)
    """Token vocabulary; unset: the tokenizer's."""
    hidden_size: int = trajectory(256, gt=0, le=65536)
    """Width of the residual stream."""
    intermediate_size: int = trajectory(688, gt=0, le=262144)
    """Hidden width of each block's gated feed-forward layer."""
    num_hidden_layers: int = trajectory(4, gt=0, le=1024)
    """Number of decoder blocks."""
    num_attention_heads: int = trajectory(4, gt=0, le=1024)
    """Query heads per block."""
    num_key_value_heads: int | None = trajectory(None, gt=0, le=1024)
    """Key/value heads (grouped-query attention); unset: one per query head."""
    head_dim: int | None = trajectory(None, gt=0, le=4096)
    """Width of each head; unset: hidden_size / num_attention_heads."""
    rms_norm_eps: float = trajectory(1e-6, gt=0, le=1)
    """Epsilon of every RMSNorm."""
    rope_theta: float = trajectory(10000.0, gt=0, le=1e9)
    """Base of the rotary position embedding's frequencies."""
    max_position_embeddings: int = trajectory(2048, gt=0, le=1 << 20)
    """Longest sequence the model is meant for (recorded in an exported config)."""
    tie_word_embeddings: bool = trajectory(False)
    """Share the token embedding with the output head."""

    @model_validator(mode="after")
    def _heads_fit(self) -> Decoder:
        kv = self.num_key_value_heads or self.num_attention_heads
        if self.num_attention_heads % kv:
            raise rule_error("num_key_value_heads", "must divide model.num_attention_heads", got=kv)
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise rule_error(
                "num_attention_heads",
                "must divide model.hidden_size (or set model.head_dim)",
                got=self.num_attention_heads,
            )
        return self


class CustomModel(_Model):
    """A model built by your own factory `(rngs, **args) -> nnx.Module`."""

    kind: Literal["custom"] = trajectory()
    """Model family."""
    target: Target = trajectory()
    """Factory to call, written `package.module:function`; imported only when allowed
    (`--allow-import PREFIX`)."""
    args: Args = trajectory({})
    """Keyword arguments passed to the factory."""


ModelSpec = Annotated[MLP | Transformer | Pretrained | Decoder | CustomModel, Field(discriminator="kind")]
