"""The decoder families' own behaviour: KV-cache decoding, packed documents, weight names and load errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from expspec.compiler.decoder_config import DecoderConfig, read_hf_config
from expspec.runtime.models.common import BuildContext, ModelError
from expspec.runtime.models.decoder import DecoderLM, build_decoder, rope_inv_freq
from expspec.runtime.models.hf_weights import hf_name, hf_state, load_hf_weights, nnx_path
from expspec.runtime.models.lora import LoRALinear
from expspec.runtime.models.safetensors_files import SafetensorsFolder, write_safetensors
from expspec.runtime.types import DataInfo
from expspec.spec.model import Decoder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pretrained"


def tiny(family: str = "qwen3", **changes: object) -> DecoderConfig:
    fields = dict(
        family=family, vocab_size=48, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, qk_norm=family == "qwen3",
        attention_bias=family == "qwen2", rms_norm_eps=1e-5,
    )  # fmt: skip
    return DecoderConfig(**{**fields, **changes})


def loaded(name: str, **kw: object) -> DecoderLM:
    config = read_hf_config(FIXTURES / name)
    model = nnx.eval_shape(lambda: DecoderLM(config, rngs=nnx.Rngs(params=0), **kw))
    load_hf_weights(model, FIXTURES / name)
    return model


@nnx.jit
def forward(model: DecoderLM, x: jax.Array, segments: jax.Array | None = None, positions: jax.Array | None = None):
    return model(x, segments=segments, positions=positions)


@pytest.mark.parametrize("name", ["tiny-qwen3", "tiny-llama-tied"])
def test_greedy_decoding_with_the_cache_equals_full_forwards(name: str) -> None:
    model = loaded(name)
    graphdef, state = nnx.split(model)
    prompt = np.array([[5, 17, 9, 33, 2], [8, 8, 40, 1, 12]], dtype=np.int32)
    new_tokens = 6
    batch, length = prompt.shape[0], prompt.shape[1] + new_tokens

    @jax.jit
    def step(state, tokens, cache, start):  # start is traced: one compiled decode step for every position
        logits, cache = nnx.merge(graphdef, state).decode(
            tokens, positions=start + jnp.arange(tokens.shape[1])[None], cache=cache, start=start
        )
        return logits[:, -1], cache

    cache = model.init_cache(batch, length)
    last, cache = step(state, jnp.asarray(prompt), cache, jnp.int32(0))
    tokens, steps = prompt, []
    for _ in range(new_tokens):
        steps.append(np.asarray(last))
        chosen = np.argmax(steps[-1], axis=-1).astype(np.int32)[:, None]
        last, cache = step(state, jnp.asarray(chosen), cache, jnp.int32(tokens.shape[1]))
        tokens = np.concatenate([tokens, chosen], axis=1)
    assert cache["layers"][0]["k"].shape == (batch, length, model.kv_heads, model.head_dim)
    # Causal: the full forward's logits at position p are those of the prefix ending at p,
    # i.e. what a full recomputation at each step gives.
    full = np.asarray(forward(model, jnp.asarray(tokens)))[:, prompt.shape[1] - 1 : -1]
    for i, cached in enumerate(steps):
        np.testing.assert_allclose(cached, full[:, i], atol=1e-5, err_msg=f"decode step {i}")
        assert (np.argmax(full[:, i], axis=-1) == tokens[:, prompt.shape[1] + i]).all()


def test_segments_keep_packed_documents_apart() -> None:
    model = DecoderLM(tiny("llama"), rngs=nnx.Rngs(params=3))
    first, second = np.array([4, 9, 11, 30, 7]), np.array([21, 3, 3, 44])
    segments = jnp.asarray(np.repeat([1, 2], [5, 4])[None])
    positions = jnp.asarray(np.concatenate([np.arange(5), np.arange(4)])[None])

    def packed(doc: np.ndarray, **kw: jax.Array) -> np.ndarray:
        return np.asarray(forward(model, jnp.asarray(np.concatenate([doc, second])[None]), **kw))[0, 5:]

    alone = np.asarray(forward(model, jnp.asarray(second[None])))[0]
    np.testing.assert_allclose(packed(first, segments=segments, positions=positions), alone, atol=1e-5)
    other = np.array([1, 2, 3, 4, 5])
    np.testing.assert_allclose(
        packed(first, segments=segments, positions=positions),
        packed(other, segments=segments, positions=positions),
        atol=1e-6,
    )
    assert np.abs(packed(first) - packed(other)).max() > 1e-3  # without segments the documents do mix


def test_hf_names_follow_the_module_tree_and_invert() -> None:
    model = DecoderLM(tiny("qwen2"), rngs=nnx.Rngs(params=0))
    state = nnx.state(model, nnx.Param)
    for path, _ in nnx.to_flat_state(state):
        name, transposed = hf_name(tuple(str(p) for p in path))
        assert nnx_path(name) == (tuple(path), transposed)
    assert hf_name(("model", "layers", "3", "self_attn", "q_proj", "kernel")) == (
        "model.layers.3.self_attn.q_proj.weight",
        True,
    )
    assert hf_name(("model", "layers", "0", "self_attn", "q_proj", "base", "kernel"))[0].endswith("q_proj.weight")
    assert hf_name(("model", "embed_tokens", "embedding")) == ("model.embed_tokens.weight", False)
    with pytest.raises(ModelError, match="LoRA"):
        hf_name(("model", "layers", "0", "self_attn", "q_proj", "lora", "lora_a"))


def test_hf_state_gives_back_the_files_tensors_also_under_lora() -> None:
    model = loaded("tiny-llama")
    files = SafetensorsFolder(FIXTURES / "tiny-llama")
    layer = model.model.layers[0].self_attn
    layer.q_proj = LoRALinear(layer.q_proj, 2, 4.0, rngs=nnx.Rngs(params=1))
    state = hf_state(model)
    assert sorted(state) == files.names()
    for name in files.names():
        np.testing.assert_array_equal(state[name], files.read(name), err_msg=name)


def test_params_take_the_param_dtype() -> None:
    model = loaded("tiny-qwen2", param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    kernel = model.model.layers[1].mlp.up_proj.kernel[...]
    assert kernel.dtype == jnp.bfloat16
    expected = SafetensorsFolder(FIXTURES / "tiny-qwen2").read("model.layers.1.mlp.up_proj.weight").T
    np.testing.assert_array_equal(np.asarray(kernel), expected.astype(jnp.bfloat16))
    assert model(jnp.ones((1, 4), jnp.int32)).dtype == jnp.float32


def copy_fixture(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    return folder


def rewrite(folder: Path, edit: Callable[[dict[str, np.ndarray]], object]) -> None:
    with SafetensorsFolder(folder) as files:
        tensors = {n: np.array(files.read(n)) for n in files.names()}
    edit(tensors)
    write_safetensors(folder / "model.safetensors", tensors)


def load_error(folder: Path) -> str:
    config = read_hf_config(folder)
    model = nnx.eval_shape(lambda: DecoderLM(config, rngs=nnx.Rngs(params=0)))
    with pytest.raises(ModelError) as caught:
        load_hf_weights(model, folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_tensor_is_named(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path, "tiny-qwen2")
    rewrite(folder, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    message = load_error(folder)
    assert "model.layers.1.self_attn.k_proj.bias" in message and "missing" in message and str(folder) in message


def test_an_unknown_tensor_is_named_and_rope_buffers_are_not(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path, "tiny-qwen2")
    rewrite(folder, lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(4, np.float32)}))
    # a buffer that is recomputed from the config loads fine
    model = nnx.eval_shape(lambda: DecoderLM(read_hf_config(folder), rngs=nnx.Rngs(params=0)))
    load_hf_weights(model, folder)
    rewrite(folder, lambda t: t.update({"model.layers.0.mlp.extra.weight": np.ones(4, np.float32)}))
    message = load_error(folder)
    assert "model.layers.0.mlp.extra.weight" in message and "model.safetensors" in message


def test_a_shape_that_does_not_match_the_config_is_named(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path, "tiny-llama")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 24
    (folder / "config.json").write_text(json.dumps(config))
    message = load_error(folder)
    assert "mlp.down_proj.weight" in message and "model.safetensors" in message and "[32, 24]" in message


def test_a_truncated_shard_is_named(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path, "tiny-llama-tied")
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-5])
    message = load_error(folder)
    assert shard.name in message and "truncated" in message


def test_from_scratch_builder_is_seeded_and_sized_by_the_tokenizer() -> None:
    spec = Decoder(kind="qwen3", hidden_size=32, intermediate_size=40, num_hidden_layers=1, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16)  # fmt: skip
    info = DataInfo(task="lm", vocab_size=50, seq_len=8)
    first, second = (build_decoder(spec, info, BuildContext(init_seed=7)) for _ in range(2))
    assert first.model.embed_tokens.embedding.shape == (50, 32)
    assert first.model.layers[0].self_attn.q_norm.weight.shape == (16,)
    for (_, a), (_, b) in zip(nnx.to_flat_state(nnx.state(first)), nnx.to_flat_state(nnx.state(second))):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))
    logits = first(jnp.zeros((2, 8), jnp.int32), train=True, key=jax.random.key(0))
    assert logits.shape == (2, 8, 50)
    with pytest.raises(ModelError, match="vocab_size"):
        build_decoder(spec.model_copy(update={"vocab_size": 20}), info, BuildContext(init_seed=7))


def test_llama3_rope_scaling_touches_only_low_frequencies() -> None:
    plain = rope_inv_freq(16, 500000.0, None)
    scaled = rope_inv_freq(16, 500000.0, dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                               high_freq_factor=4.0, original_max_position_embeddings=256))  # fmt: skip
    wavelength = 2 * np.pi / plain
    assert (scaled[wavelength < 64] == plain[wavelength < 64]).all()
    np.testing.assert_allclose(scaled[wavelength > 256], plain[wavelength > 256] / 8, rtol=1e-6)
    medium = (wavelength >= 64) & (wavelength <= 256)
    assert medium.any() and ((scaled[medium] < plain[medium]) & (scaled[medium] > plain[medium] / 8)).all()


def test_lora_dropout_draws_from_the_step_key_only_while_training() -> None:
    model = DecoderLM(tiny("llama"), rngs=nnx.Rngs(params=0))
    attention = model.model.layers[1].self_attn
    attention.v_proj = LoRALinear(attention.v_proj, 2, 4.0, rngs=nnx.Rngs(params=1), dropout=0.5)
    attention.v_proj.lora.lora_b[...] = jnp.ones_like(attention.v_proj.lora.lora_b[...])  # make the adapter count
    x = jnp.asarray([[3, 1, 4, 1, 5, 9]])
    evaluated = np.asarray(model(x))
    np.testing.assert_array_equal(np.asarray(model(x, train=True)), evaluated)  # no key: no dropout
    first, again = (np.asarray(model(x, train=True, key=jax.random.key(1))) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - evaluated).max() > 1e-4
    assert np.abs(first - np.asarray(model(x, train=True, key=jax.random.key(2)))).max() > 1e-4
