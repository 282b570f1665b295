"""A small Hugging Face model folder written by expspec itself, for tests that fine-tune one.

Random weights of a tiny decoder over the shipped character tokenizer's vocabulary,
saved the way a hub download is laid out: `config.json`, `model.safetensors`, tokenizer files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import EXAMPLES

SFT_TOKENIZER = EXAMPLES / "data" / "sft_task" / "tokenizer"
TEXT_TOKENIZER = EXAMPLES / "data" / "text_tokenizer"


def write_pretrained_folder(
    folder: Path,
    family: str = "llama",
    seed: int = 0,
    *,
    hidden: int = 32,
    intermediate: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    tokenizer: Path = SFT_TOKENIZER,
) -> Path:
    """`folder` holding a random `family` decoder with `tokenizer`'s files and vocabulary."""
    from flax import nnx

    from expspec.compiler.decoder_config import DecoderConfig
    from expspec.runtime.data.tokenizer import load_tokenizer
    from expspec.runtime.models.decoder import DecoderLM
    from expspec.runtime.models.hf_weights import hf_state
    from expspec.runtime.models.safetensors_files import write_safetensors

    vocab = load_tokenizer(tokenizer).vocab_size
    config = DecoderConfig(
        family=family,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=64,
        attention_bias=family == "qwen2",
        qk_norm=family == "qwen3",
    )
    model = DecoderLM(config, dtype="float32", param_dtype="float32", rngs=nnx.Rngs(params=seed))
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", hf_state(model))
    (folder / "config.json").write_text(json.dumps(config.to_hf(), indent=2))
    for file in tokenizer.iterdir():
        shutil.copy(file, folder / file.name)
    return folder
