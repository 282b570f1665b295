"""The jitted train and eval steps: pure functions over a pytree of plain dicts.

The model is split once (`nnx.split`) into a graph definition and parameter
states; the step rebuilds the module from them at trace time only, so each call
costs one compiled-function dispatch, not an NNX graph traversal. The state is
donated: parameters and optimizer state are updated in place on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from .hashing import device_fingerprints
from .objectives import loss_and_metrics, weighted_sums
from .types import PyTree

__all__ = ["ModelParts", "Steps", "make_steps"]


@dataclass(frozen=True)
class ModelParts:
    """A split model: what the steps need to rebuild it inside `jit`."""

    graphdef: Any
    params: nnx.State
    """Trainable variables (the template; values are replaced at trace time)."""
    frozen: nnx.State
    """Everything else (base weights under LoRA; empty otherwise)."""


@dataclass(frozen=True)
class Steps:
    train: Callable[[PyTree, dict[str, Any]], tuple[PyTree, dict[str, jax.Array], dict[str, jax.Array]]]
    """(state, batch) -> (new state, metrics, {"params": fps, "opt": fps}); donates `state`."""
    evaluate: Callable[[PyTree, dict[str, Any]], dict[str, jax.Array]]
    """(state, batch) -> weighted metric sums for one eval batch."""
    fingerprint: Callable[[PyTree], dict[str, jax.Array]]
    """state -> {"params": fps, "opt": fps}, as the train step reports them."""


def _abstract(state: nnx.State) -> nnx.State:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def make_steps(
    parts: ModelParts,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    task: str,
    dropout_seed: int,
    grad_accum: int,
) -> Steps:
    """Compile-once train and eval steps for one run."""
    params_template, frozen_template = _abstract(parts.params), _abstract(parts.frozen)

    def model_of(params: PyTree, frozen: PyTree) -> nnx.Module:
        p, f = jax.tree.map(lambda x: x, params_template), jax.tree.map(lambda x: x, frozen_template)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(f, frozen)
        return nnx.merge(parts.graphdef, p, f)

    def loss_fn(params: PyTree, frozen: PyTree, batch: dict[str, Any], key: jax.Array):
        outputs = model_of(params, frozen)(batch["x"], train=True, key=key)
        return loss_and_metrics(outputs, batch, task)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def gradients(params: PyTree, frozen: PyTree, batch: dict[str, Any], key: jax.Array):
        if grad_accum == 1:
            (_, metrics), grads = grad_fn(params, frozen, batch, key)
            return grads, metrics

        def split(a: jax.Array) -> jax.Array:
            return a.reshape(grad_accum, a.shape[0] // grad_accum, *a.shape[1:])

        def micro(carry, xs):
            index, mb = xs
            (_, metrics), grads = grad_fn(params, frozen, mb, jax.random.fold_in(key, index))
            return jax.tree.map(jnp.add, carry, (grads, metrics)), None

        micro_batches = jax.tree.map(split, batch)
        first = jax.tree.map(lambda a: a[0], micro_batches)
        (_, metric_shapes), grad_shapes = jax.eval_shape(grad_fn, params, frozen, first, key)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (grad_shapes, metric_shapes))
        (grads, metrics), _ = jax.lax.scan(micro, zeros, (jnp.arange(grad_accum), micro_batches))
        return jax.tree.map(lambda g: g / grad_accum, (grads, metrics))

    dropout_root = jax.random.key(dropout_seed)

    def fingerprint(state: PyTree) -> dict[str, jax.Array]:
        return {"params": device_fingerprints(state["params"]), "opt": device_fingerprints(state["opt"])}

    def train(state: PyTree, batch: dict[str, Any]):
        step = state["step"]
        grads, metrics = gradients(state["params"], state["frozen"], batch, jax.random.fold_in(dropout_root, step))
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"params": params, "frozen": state["frozen"], "opt": opt, "step": step + 1}
        metrics = {**metrics, "lr": jnp.asarray(schedule(step), jnp.float32), "grad_norm": optax.global_norm(grads)}
        return new, metrics, fingerprint(new)

    def evaluate(state: PyTree, batch: dict[str, Any]) -> dict[str, jax.Array]:
        outputs = model_of(state["params"], state["frozen"])(batch["x"], train=False, key=None)
        return weighted_sums(outputs, batch, task)

    return Steps(train=jax.jit(train, donate_argnums=0), evaluate=jax.jit(evaluate), fingerprint=jax.jit(fingerprint))
