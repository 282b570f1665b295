"""Hugging Face parity: each committed tiny model, loaded through expspec, gives `transformers`' logits.

The fixtures and their logits come from `tests/fixtures/pretrained/make_fixtures.py`
(PyTorch + transformers, float32, eager attention); nothing here imports either.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from expspec.compiler.decoder_config import read_hf_config
from expspec.runtime.models.decoder import DecoderLM
from expspec.runtime.models.hf_weights import load_hf_weights

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pretrained"
NAMES = ["tiny-llama", "tiny-llama-tied", "tiny-mistral", "tiny-qwen2", "tiny-qwen3"]
TOLERANCE = 1e-5
FAMILY = {
    "tiny-llama": "llama",
    "tiny-llama-tied": "llama",
    "tiny-mistral": "llama",
    "tiny-qwen2": "qwen2",
    "tiny-qwen3": "qwen3",
}


def load(name: str) -> tuple[DecoderLM, dict[str, np.ndarray]]:
    folder = FIXTURES / name
    config = read_hf_config(folder)
    assert config.family == FAMILY[name]
    model = nnx.eval_shape(lambda: DecoderLM(config, rngs=nnx.Rngs(params=0)))
    load_hf_weights(model, folder)
    with np.load(folder / "expected.npz") as expected:
        return model, dict(expected)


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_transformers(name: str) -> None:
    model, expected = load(name)
    logits = np.asarray(model(jnp.asarray(expected["ids"])))
    assert logits.dtype == np.float32 and logits.shape == expected["logits"].shape
    real = expected["mask"].astype(bool)  # right padding: compare the unpadded positions
    gap = np.abs(logits - expected["logits"])[real]
    assert gap.max() < TOLERANCE, f"{name}: max abs logit difference {gap.max():.2e}"


@pytest.mark.parametrize("name", NAMES)
def test_packed_documents_match_each_alone(name: str) -> None:
    model, expected = load(name)
    docs = [expected[f"doc_ids_{k}"][0] for k in range(3)]
    ids = np.concatenate(docs)[None]
    segments = np.concatenate([np.full(len(d), k + 1) for k, d in enumerate(docs)])[None]
    positions = np.concatenate([np.arange(len(d)) for d in docs])[None]
    logits = np.asarray(model(jnp.asarray(ids), segments=jnp.asarray(segments), positions=jnp.asarray(positions)))
    start = 0
    for k, doc in enumerate(docs):
        alone = expected[f"doc_logits_{k}"][0]
        gap = np.abs(logits[0, start : start + len(doc)] - alone).max()
        assert gap < TOLERANCE, f"{name}: document {k} packed differs from alone by {gap:.2e}"
        start += len(doc)
