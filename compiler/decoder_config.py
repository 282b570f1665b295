"""The decoder-only language models expspec builds, described by Hugging Face `config.json` fields.

Pure data, no JAX: `exp plan` sizes a pretrained model's parameters from its
`config.json` alone, and the runtime builds the Flax NNX model from the same
object. One description covers the Llama family (Llama 2/3, TinyLlama, Mistral
without a sliding window), Qwen2 (biased q/k/v projections) and Qwen3 (RMSNorm
on queries and keys): they differ only in those switches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from expspec.errors import BadInput

if TYPE_CHECKING:
    from expspec.spec.model import Decoder

__all__ = ["ARCHITECTURES", "ConfigError", "DecoderConfig", "read_hf_config"]

Family = Literal["llama", "qwen2", "qwen3"]

ARCHITECTURES: dict[str, Family] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
"""Hugging Face architecture name -> the family that builds it."""

_HF_NAMES: dict[Family, tuple[str, str]] = {
    "llama": ("LlamaForCausalLM", "llama"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
    "qwen3": ("Qwen3ForCausalLM", "qwen3"),
}
"""Family -> (architecture, model_type) written into an exported `config.json`."""


class ConfigError(BadInput, ValueError):
    """A `config.json` this version cannot build; the message names the file and key."""


@dataclass(frozen=True)
class DecoderConfig:
    """Everything that decides a decoder's parameters and its math."""

    family: Family
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    """Hugging Face's `rope_scaling` (`rope_type` "linear" or "llama3"), or None."""
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    """Biases on the q, k and v projections (Qwen2; Llama configs may ask for them too)."""
    qk_norm: bool = False
    """RMSNorm over each head's queries and keys before RoPE (Qwen3)."""
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields of the source config kept only to be written back on export."""

    @classmethod
    def from_hf(cls, config: dict[str, Any], source: str = "config.json") -> DecoderConfig:
        """The configuration of a Hugging Face `config.json` (already parsed)."""

        def need(key: str, kind: type = int) -> Any:
            value = config.get(key)
            if value is None:
                raise ConfigError(f"{source}: {key}: missing")
            if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"{source}: {key}: must be a positive integer, got {value!r}")
            return value

        architectures = config.get("architectures") or []
        known = [a for a in architectures if a in ARCHITECTURES]
        if not known:
            raise ConfigError(
                f"{source}: architectures: {architectures or 'none given'} not supported; "
                f"supported: {', '.join(sorted(ARCHITECTURES))}"
            )
        family = ARCHITECTURES[known[0]]
        # Mistral v0.1 slides its attention window; Qwen configs carry a window they only
        # use when `use_sliding_window` is on. Full attention only, so refuse both.
        window = config.get("sliding_window") if known[0] == "MistralForCausalLM" else None
        if config.get("use_sliding_window") or window:
            raise ConfigError(f"{source}: sliding_window: sliding-window attention is not supported")
        heads = need("num_attention_heads")
        hidden = need("hidden_size")
        head_dim = config.get("head_dim") or hidden // heads
        scaling, theta = config.get("rope_scaling"), config.get("rope_theta", 10000.0)
        rope = config.get("rope_parameters")  # transformers >= 5 writes theta and scaling here
        if scaling is None and isinstance(rope, dict):
            theta = rope.get("rope_theta", theta)
            scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling is not None:
            kind = scaling.get("rope_type", scaling.get("type"))
            if kind not in ("linear", "llama3", "default"):
                raise ConfigError(f"{source}: rope_scaling: type {kind!r} not supported (linear, llama3)")
            scaling = None if kind == "default" else {**scaling, "rope_type": kind}
        known_keys = {f for f in cls.__dataclass_fields__} | {
            "architectures", "model_type", "torch_dtype", "dtype", "rope_parameters"
        }  # fmt: skip
        return cls(
            family=family,
            vocab_size=need("vocab_size"),
            hidden_size=hidden,
            intermediate_size=need("intermediate_size"),
            num_hidden_layers=need("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=config.get("num_key_value_heads") or heads,
            head_dim=int(head_dim),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            rope_scaling=scaling,
            max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            attention_bias=bool(config.get("attention_bias", family == "qwen2")),
            qk_norm=family == "qwen3",
            bos_token_id=config.get("bos_token_id"),
            eos_token_id=config.get("eos_token_id"),
            extra={k: v for k, v in config.items() if k not in known_keys},
        )

    @classmethod
    def from_spec(cls, spec: Decoder, vocab_size: int) -> DecoderConfig:
        """The configuration a `kind = "llama" | "qwen2" | "qwen3"` spec describes; `vocab_size`
        is the tokenizer's when the spec leaves it unset."""
        return cls(
            family=spec.kind,
            vocab_size=spec.vocab_size or vocab_size,
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_hidden_layers,
            num_attention_heads=spec.num_attention_heads,
            num_key_value_heads=spec.num_key_value_heads or spec.num_attention_heads,
            head_dim=spec.head_dim or spec.hidden_size // spec.num_attention_heads,
            rms_norm_eps=spec.rms_norm_eps,
            rope_theta=spec.rope_theta,
            max_position_embeddings=spec.max_position_embeddings,
            tie_word_embeddings=spec.tie_word_embeddings,
            attention_bias=spec.kind == "qwen2",
            qk_norm=spec.kind == "qwen3",
        )

    def to_hf(self, dtype: str = "float32") -> dict[str, Any]:
        """A `config.json` that Hugging Face `transformers` loads as this model."""
        architecture, model_type = _HF_NAMES[self.family]
        out = {**self.extra, **{k: v for k, v in asdict(self).items() if k not in ("family", "extra", "qk_norm")}}
        if self.family == "qwen2":
            out.pop("attention_bias")  # Qwen2 always has q/k/v biases; its config has no such key
        if out["rope_scaling"] is None:
            out.pop("rope_scaling")
        out.update(architectures=[architecture], model_type=model_type, torch_dtype=dtype, hidden_act="silu")
        return dict(sorted(out.items()))


def read_hf_config(folder: Path) -> DecoderConfig:
    """The `config.json` of a Hugging Face model folder."""
    path = Path(folder) / "config.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{folder}: no config.json (a Hugging Face model folder holds config.json and *.safetensors)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return DecoderConfig.from_hf(document, str(path))
