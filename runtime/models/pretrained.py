"""`kind = "pretrained"`: a Hugging Face model folder, built and loaded as the starting point."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from expspec.compiler.decoder_config import ConfigError, read_hf_config
from expspec.runtime.models.common import BuildContext, ModelError
from expspec.runtime.models.decoder import DecoderLM
from expspec.runtime.models.hf_weights import load_hf_weights
from expspec.runtime.types import DataInfo

from ...spec.model import Pretrained

__all__ = ["build_pretrained", "model_folder"]


def model_folder(spec: Pretrained, spec_dir: Path) -> Path:
    """The model folder, relative paths against the spec's folder."""
    path = Path(spec.path).expanduser()
    return path if path.is_absolute() else Path(spec_dir) / path


def build_pretrained(spec: Pretrained, info: DataInfo, ctx: BuildContext) -> DecoderLM:
    """The folder's architecture with its weights; the `init` stream is not used.

    The model is built abstract (shapes only) and each parameter filled from its
    memory-mapped tensor, so loading holds one host copy of the weights at most,
    never a random initialisation beside them.
    """
    folder = model_folder(spec, ctx.search[0] if ctx.search else Path.cwd())
    try:
        cfg = read_hf_config(folder)
    except ConfigError as err:
        raise ModelError(f"model.path: {err}") from None
    if info.task != "lm":
        raise ModelError(f"model.kind 'pretrained' needs a language-modelling dataset, got task '{info.task}'")
    if info.vocab_size and info.vocab_size > cfg.vocab_size:
        raise ModelError(
            f"model.path: {folder}: the tokenizer has {info.vocab_size} tokens, the model's embedding only "
            f"{cfg.vocab_size}; use the model's own tokenizer (data.tokenizer = the model folder)"
        )
    model = nnx.eval_shape(
        lambda: DecoderLM(cfg, dtype=ctx.dtype, param_dtype=ctx.param_dtype, rngs=nnx.Rngs(params=ctx.init_seed))
    )
    load_hf_weights(model, folder)
    return model
