"""Models and objectives, run for real on tiny sizes.

Forward passes go through one `nnx.jit` function: a compile per model shape
is far cheaper than compiling every primitive eagerly.
"""

from __future__ import annotations

import inspect
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from expspec.runtime.engine.objectives import loss_and_metrics, means, weighted_sums
from expspec.runtime.models import MODEL_BUILDERS, ModelError, apply_lora, build_model, trainable_filter
from expspec.runtime.types import DataInfo
from expspec.spec import ImportNotAllowed
from expspec.spec.model import MLP, CustomModel, LoRA, Transformer

CLS = DataInfo("classification", input_dim=5, num_classes=3)
REG = DataInfo("regression", input_dim=5)
LM = DataInfo("lm", vocab_size=11, seq_len=8)


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    """XLA's optimisation passes dominate these tiny tests (halving their time).

    The flag is not part of JAX's compile-cache key, so the executables
    compiled under it are dropped afterwards: later tests that compare bits
    must not pick up unoptimised kernels.
    """
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)
    jax.clear_caches()


@nnx.jit(static_argnames="train")
def forward(model, x, key=None, train=False):
    return model(x, train=train, key=key)


def run(model, x, key=None, train=False) -> np.ndarray:
    return np.asarray(forward(model, x, key, train))


def mlp(**kw) -> MLP:
    return MLP(kind="mlp", hidden=(16, 16), **{"dropout": 0.5, **kw})


def transformer(**kw) -> Transformer:
    base = dict(kind="transformer", layers=1, d_model=16, heads=2, d_ff=32, max_len=8, dropout=0.5)
    return Transformer(**{**base, **kw})


def leaves(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


FEATURES = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
TOKENS = np.random.default_rng(0).integers(0, 11, (3, 8)).astype(np.int32)


@pytest.fixture(scope="module")
def mlp_model() -> nnx.Module:
    return build_model(mlp(), CLS, 0)


@pytest.fixture(scope="module")
def lm_model() -> nnx.Module:
    return build_model(transformer(), LM, 0)


# -- initialisation ------------------------------------------------------------


@pytest.mark.parametrize("spec, info", [(mlp(), CLS), (transformer(), LM)], ids=["mlp", "transformer"])
def test_same_seed_same_bits_other_seed_other_params(spec, info):
    a, b, c = (leaves(build_model(spec, info, s)) for s in (3, 3, 4))
    assert len(a) == len(b) > 0
    assert all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b))
    # Biases and LayerNorm start equal across seeds; the random weights must not.
    assert any(x.tobytes() != z.tobytes() for x, z in zip(a, c))


@pytest.mark.parametrize("fixture", ["mlp_model", "lm_model"])
def test_state_holds_parameters_only(fixture, request):
    flat = nnx.to_flat_state(nnx.state(request.getfixturevalue(fixture)))
    assert {type(v) for _, v in flat} == {nnx.Param}


def test_transformer_parameter_paths():
    model = build_model(transformer(layers=2), LM, 0)
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model))}
    for name in ("query", "key", "value", "out"):
        assert f"blocks.1.attn.{name}.kernel" in paths
    assert {"tok_embed.embedding", "pos_embed.embedding", "head.kernel", "blocks.0.ff_in.kernel"} <= paths


def test_param_dtype_and_compute_dtype():
    model = build_model(mlp(), CLS, 0, dtype="bfloat16", param_dtype="bfloat16")
    assert {x.dtype for x in leaves(model)} == {jnp.dtype(jnp.bfloat16)}
    assert forward(model, FEATURES).dtype == jnp.bfloat16
    with pytest.raises(ModelError, match="dtype"):
        build_model(mlp(), CLS, 0, dtype="float8")


# -- shapes and dropout ----------------------------------------------------------


def test_output_shapes(mlp_model, lm_model):
    assert run(mlp_model, FEATURES).shape == (4, 3)
    assert run(build_model(mlp(), REG, 0), FEATURES).shape == (4,)
    assert run(lm_model, TOKENS).shape == (3, 8, 11)


def test_wrong_task_or_too_long_windows_refused():
    with pytest.raises(ModelError, match="language-modelling"):
        build_model(transformer(), CLS, 0)
    with pytest.raises(ModelError, match="classification or regression"):
        build_model(mlp(), LM, 0)
    with pytest.raises(ModelError, match="max_len"):
        build_model(transformer(max_len=4), LM, 0)


@pytest.mark.parametrize("fixture, x", [("mlp_model", FEATURES), ("lm_model", TOKENS)], ids=["mlp", "transformer"])
def test_dropout_follows_train_and_key(fixture, x, request):
    model = request.getfixturevalue(fixture)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    plain = run(model, x)
    assert np.array_equal(plain, run(model, x, k1))
    a, a_again, b = (run(model, x, k, train=True) for k in (k1, k1, k2))
    assert np.array_equal(a, a_again)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, plain)
    with pytest.raises(ValueError, match="key"):
        model(x, train=True, key=None)


def test_each_dropout_layer_draws_its_own_mask():
    """Identity hidden layers and a summing head make the kept units countable.

    With all-ones input, class 0's output is 4 x (units kept by both layers);
    shared masks would keep exactly the units of the first mask.
    """
    info = DataInfo("classification", input_dim=64, num_classes=2)
    model = build_model(MLP(kind="mlp", hidden=(64, 64), dropout=0.5), info, 0)
    for layer in model.layers[:2]:
        layer.kernel[...] = jnp.eye(64)
        layer.bias[...] = jnp.zeros(64)
    model.layers[2].kernel[...] = jnp.zeros((64, 2)).at[:, 0].set(1.0)
    key = jax.random.key(5)
    kept = run(model, np.ones((1, 64), np.float32), key, train=True)[0, 0] / 4.0
    m0, m1 = (np.asarray(nnx.Dropout(0.5)(jnp.ones(64), rngs=jax.random.fold_in(key, i))) != 0 for i in (0, 1))
    assert kept == (m0 & m1).sum()
    assert kept != m0.sum()


def test_transformer_is_causal(lm_model):
    t = 5
    x = TOKENS[:1]
    y = x.copy()
    y[0, t] = (y[0, t] + 1) % 11
    a, b = run(lm_model, x), run(lm_model, y)
    assert np.array_equal(a[:, :t], b[:, :t])
    assert not np.allclose(a[:, t], b[:, t])


def test_registry_has_every_kind():
    assert set(MODEL_BUILDERS) == {"mlp", "transformer", "custom", "pretrained", "llama", "qwen2", "qwen3"}


# -- LoRA ---------------------------------------------------------------------


ATTN = ("query", "key", "value", "out")
LORA_SEED = 5
"""Stands for the plan's `lora` seed stream, which the runtime passes to `apply_lora`."""


def adapted_model(spec: Transformer, info: DataInfo = LM) -> nnx.Module:
    """The production path: the base model, then adapters from the `lora` seed."""
    return apply_lora(build_model(spec, info, 0), spec.lora, LORA_SEED)


def test_build_model_gives_the_base_model_and_only_apply_lora_adds_adapters():
    spec = transformer(lora=LoRA(rank=1, targets=ATTN))
    assert "with_lora" not in inspect.signature(build_model).parameters
    base = build_model(spec, LM, 0)
    assert not jax.tree.leaves(nnx.state(base, nnx.LoRAParam))
    assert all(np.array_equal(x, y) for x, y in zip(leaves(base), leaves(build_model(transformer(), LM, 0))))


def test_lora_adapts_attention_and_starts_equal_to_base():
    spec = transformer(lora=LoRA(rank=1, alpha=2.0, targets=ATTN))
    base = build_model(spec, LM, 0)
    adapted = adapted_model(spec)
    for name in ATTN:
        layer = getattr(adapted.blocks[0].attn, name)
        assert isinstance(layer.base, nnx.Linear) and isinstance(layer.lora, nnx.LoRA)
        assert layer.scale == 2.0
    assert np.array_equal(run(base, TOKENS), run(adapted, TOKENS))

    lora_state = nnx.to_flat_state(nnx.state(adapted, nnx.LoRAParam))
    assert {p[-1] for p, _ in lora_state} == {"lora_a", "lora_b"}
    assert all(type(v) is nnx.LoRAParam for _, v in lora_state)
    assert len(lora_state) == 2 * len(ATTN)
    n_lora = sum(v[...].size for _, v in lora_state)
    n_base = sum(x.size for x in leaves(base))
    assert n_lora * 10 < n_base
    assert trainable_filter(spec) is nnx.LoRAParam and trainable_filter(transformer()) is nnx.Param


def test_lora_scale_applies_alpha_over_rank():
    spec = transformer(lora=LoRA(rank=2, alpha=6.0, targets=("query",)))
    model = adapted_model(spec)
    layer = model.blocks[0].attn.query
    layer.lora.lora_b[...] = jnp.ones_like(layer.lora.lora_b[...])
    x = jax.random.normal(jax.random.key(1), (2, 16))
    expected = layer.base(x) + 3.0 * (x @ layer.lora.lora_a[...] @ layer.lora.lora_b[...])
    assert np.allclose(layer(x), expected, atol=1e-5)


def test_lora_is_deterministic_per_seed():
    lora = LoRA(rank=2, targets=ATTN)
    a, b, c = (apply_lora(build_model(transformer(), LM, 0), lora, seed) for seed in (9, 9, 10))
    sa, sb, sc = (jax.tree.leaves(nnx.state(m, nnx.LoRAParam)) for m in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(sa, sb))
    assert not all(np.array_equal(x, z) for x, z in zip(sa, sc))
    # Different adapters get different initial factors.
    assert not np.array_equal(a.blocks[0].attn.query.lora.lora_a[...], a.blocks[0].attn.key.lora.lora_a[...])


def test_lora_without_matching_layer_is_refused():
    with pytest.raises(ModelError, match="nope"):
        adapted_model(transformer(lora=LoRA(targets=("nope",))))
    # Names that exist but are not nnx.Linear (LayerNorm) do not count as matches.
    with pytest.raises(ModelError):
        adapted_model(transformer(lora=LoRA(targets=("ln1",))))


# -- custom -------------------------------------------------------------------


FACTORY = """\
from flax import nnx


class Net(nnx.Module):
    def __init__(self, width, rngs):
        self.layer = nnx.Linear(5, width, rngs=rngs)

    def __call__(self, x):
        return self.layer(x)


class Aware(Net):
    def __call__(self, x, *, train, key):
        return self.layer(x) + (100.0 if train else 0.0)


def build(rngs, width=3):
    return Net(width, rngs)


def build_aware(rngs, width=3):
    return Aware(width, rngs)


def not_a_module(rngs):
    return "model"
"""


@pytest.fixture
def lab(tmp_path, request):
    name = f"lab_models_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    yield name, tmp_path
    sys.modules.pop(name, None)


def custom(module: str, attr: str, **args) -> CustomModel:
    return CustomModel(kind="custom", target=f"{module}:{attr}", args=args)


def test_custom_refused_without_allowance(lab):
    name, folder = lab
    with pytest.raises(ImportNotAllowed):
        build_model(custom(name, "build"), CLS, 0, search=[folder])
    assert name not in sys.modules


def test_custom_builds_with_allowance_and_is_seeded(lab):
    name, folder = lab
    spec = custom(name, "build", width=4)
    a = build_model(spec, CLS, 1, allow_imports=[name], search=[folder])
    b = build_model(spec, CLS, 1, allow_imports=[name], search=[folder])
    other = build_model(spec, CLS, 2, allow_imports=[name], search=[folder])
    assert a(FEATURES, train=True, key=jax.random.key(0)).shape == (4, 4)
    assert all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))
    # The factory's rngs come from the seed: another seed draws another kernel.
    kernels = np.asarray(a.inner.layer.kernel), np.asarray(other.inner.layer.kernel)
    assert not np.array_equal(*kernels), "seeds 1 and 2 built the same parameters: the seed never reached the factory"


def test_custom_forwards_train_and_key_when_accepted(lab):
    name, folder = lab
    model = build_model(custom(name, "build_aware"), CLS, 1, allow_imports=[name], search=[folder])
    x = FEATURES
    diff = model(x, train=True, key=jax.random.key(0)) - model(x, train=False, key=None)
    assert np.allclose(diff, 100.0)


def test_custom_factory_must_return_a_module(lab):
    name, folder = lab
    with pytest.raises(ModelError, match="not an nnx.Module"):
        build_model(custom(name, "not_a_module"), CLS, 0, allow_imports=[name], search=[folder])


def test_custom_lora_targets_user_layers(lab):
    name, folder = lab
    spec = CustomModel(kind="custom", target=f"{name}:build", lora=LoRA(rank=1, targets=("layer",)))
    model = apply_lora(build_model(spec, CLS, 0, allow_imports=[name], search=[folder]), spec.lora, LORA_SEED)
    assert isinstance(model.inner.layer.lora, nnx.LoRA)


# -- objectives -----------------------------------------------------------------

# Jitted as the training loop uses them (and one compile beats many eager ones).
objective = jax.jit(loss_and_metrics, static_argnames="task")
sums_of = jax.jit(weighted_sums, static_argnames="task")


def test_classification_accuracy_and_loss_by_hand():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]], np.float32)
    y = np.array([0, 1, 0, 2])
    loss, metrics = objective(logits, {"y": y}, task="classification")
    assert float(metrics["accuracy"]) == 0.5
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert np.isclose(float(loss), -log_p[np.arange(4), y].mean(), rtol=1e-6)
    assert float(metrics["loss"]) == float(loss)


def test_regression_mse_by_hand():
    loss, metrics = objective(np.array([1.0, 2.0, 4.0]), {"y": np.array([1.0, 0.0, 1.0])}, task="regression")
    assert np.isclose(float(metrics["mse"]), 13.0 / 3.0) and np.isclose(float(loss), 13.0 / 3.0)


@pytest.mark.parametrize("task", ["classification", "regression", "lm"])
def test_weighted_loss_equals_loss_on_real_rows(task):
    rng = np.random.default_rng(0)
    if task == "classification":
        out, y = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    elif task == "regression":
        out, y = rng.normal(size=6), rng.normal(size=6)
    else:
        out, y = rng.normal(size=(6, 5, 7)), rng.integers(0, 7, (6, 5))
    out = jnp.asarray(out, jnp.bfloat16)  # a low-precision model output: loss still float32
    w = np.array([1, 1, 1, 1, 0, 0], np.float32)
    loss_w, m_w = objective(out, {"y": y, "weight": w}, task=task)
    loss_r, m_r = objective(out[:4], {"y": y[:4]}, task=task)
    assert loss_w.dtype == jnp.float32
    assert set(m_w) == set(m_r) and "loss" in m_w
    for k in m_w:
        assert np.isclose(float(m_w[k]), float(m_r[k]), rtol=1e-6), k
    # Garbage in the padding rows must not leak into the loss.
    poisoned = out.at[4:].set(jnp.nan)
    assert np.isclose(float(objective(poisoned, {"y": y, "weight": w}, task=task)[0]), float(loss_w), rtol=1e-6)


def test_sums_over_uneven_batches_give_the_exact_mean():
    rng = np.random.default_rng(1)
    out, y = rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 3, 8)
    whole = objective(out[:7], {"y": y[:7], "weight": np.ones(7, np.float32)}, task="classification")[1]
    # Batches of 4 + 3 real rows, the second padded to 4.
    s1 = sums_of(out[:4], {"y": y[:4], "weight": np.ones(4, np.float32)}, task="classification")
    s2 = sums_of(out[4:], {"y": y[4:], "weight": np.array([1, 1, 1, 0], np.float32)}, task="classification")
    combined = means(jax.tree.map(jnp.add, s1, s2))
    for k in whole:
        assert np.isclose(float(combined[k]), float(whole[k]), rtol=1e-6), k
    # A mean of batch means would differ: the guard that this test can fail.
    naive = (means(s1)["loss"] + means(s2)["loss"]) / 2
    assert not np.isclose(float(naive), float(whole["loss"]), rtol=1e-6)
