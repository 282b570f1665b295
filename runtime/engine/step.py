"""The jitted train and eval steps: pure functions over a pytree of plain dicts.

The model is split once (`nnx.split`) into a graph definition and parameter
states; the step rebuilds the module from them at trace time only, so each call
costs one compiled-function dispatch, not an NNX graph traversal. The state is
donated: parameters and optimizer state are updated in place on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from expspec.runtime.engine.hashing import device_fingerprints
from expspec.runtime.engine.objectives import METRICS, loss_and_metrics, means, weighted_sums
from expspec.runtime.types import PyTree

__all__ = ["MODEL_INPUTS", "ModelParts", "StepCompilations", "StepReport", "Steps", "make_steps", "model_inputs"]

TRAIN_STEPS = ("jit(train)", "jit(update)")
"""The names JAX reports for the two train steps below (`train` and its unhashed variant `update`)."""


@dataclass(frozen=True)
class ModelParts:
    """A split model: what the steps need to rebuild it inside `jit`."""

    graphdef: Any
    params: nnx.State
    """Trainable variables (the template; values are replaced at trace time)."""
    frozen: nnx.State
    """Everything else (base weights under LoRA; empty otherwise)."""

    def merge(self, params: PyTree, frozen: PyTree) -> nnx.Module:
        """The model holding a train state's `params` and `frozen` values (pure dicts)."""
        p, f = jax.tree.map(lambda x: x, self.params), jax.tree.map(lambda x: x, self.frozen)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(f, frozen)
        return nnx.merge(self.graphdef, p, f)


@dataclass(frozen=True)
class StepReport:
    """How a train step packs its metrics and fingerprints into one uint32 vector.

    One array per step means one device-to-host transfer when the loop records
    it; a dict of a dozen scalars and fingerprint arrays cost ten times more host
    time per step, which small models cannot hide behind their compute.
    """

    metrics: tuple[str, ...]
    param_leaves: int

    def unpack(self, packed: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
        """(metrics, {"params": [L, 2], "opt": [L', 2]} fingerprints, or None from `train_unhashed`)."""
        m, p = len(self.metrics), 2 * self.param_leaves
        metrics = {name: float(v) for name, v in zip(self.metrics, packed[:m].view(np.float32), strict=True)}
        if len(packed) == m:
            return metrics, None
        return metrics, {"params": packed[m : m + p].reshape(-1, 2), "opt": packed[m + p :].reshape(-1, 2)}


@dataclass(frozen=True)
class Steps:
    train: Callable[[PyTree, dict[str, Any]], tuple[PyTree, jax.Array]]
    """(state, batch) -> (new state, packed metrics and fingerprints); donates `state`."""
    train_unhashed: Callable[[PyTree, dict[str, Any]], tuple[PyTree, jax.Array]]
    """`train` without the fingerprints, for steps the ledger skips (`train.ledger_every`).

    Same update, so the same bits: the fingerprints only read the new state.
    Compiled on first use, so runs that ledger every step never compile it."""
    report: StepReport
    """The layout of the packed vector both train steps return."""
    evaluate: Callable[[PyTree, dict[str, Any]], dict[str, jax.Array]]
    """(state, batch) -> weighted metric sums for one eval batch."""
    fingerprint: Callable[[PyTree], dict[str, jax.Array]]
    """state -> {"params": fps, "opt": fps}, as the train step reports them."""
    snapshot: Callable[[PyTree], PyTree]
    """A copy of a pytree on the device, which a later step's donation cannot overwrite."""


MODEL_INPUTS = ("segments", "positions")
"""Batch entries besides `x` that a model takes as keyword arguments when a source
provides them (packed text rows); the others (`y`, `weight`) feed only the loss."""


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the model call for `batch`."""
    return {name: batch[name] for name in MODEL_INPUTS if name in batch}


_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
"""JAX's monitoring event for each executable it builds, with the function's name as `fun_name`."""


def _abstract(state: nnx.State) -> nnx.State:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def make_steps(
    parts: ModelParts,
    *,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    task: str,
    dropout_seed: int,
    grad_accum: int,
    state_shardings: PyTree,
    replicated: jax.sharding.Sharding,
) -> Steps:
    """Compile-once train and eval steps for one run.

    The new state keeps the layout of the old (`state_shardings`), so every step
    takes what the last one returned and compiles once; reports, fingerprints
    and eval sums are replicated, so every process of a cluster can read them.
    """
    # Shapes only: the traced steps must not capture the initial arrays as constants.
    model_of = ModelParts(parts.graphdef, _abstract(parts.params), _abstract(parts.frozen)).merge

    def loss_fn(params: PyTree, frozen: PyTree, batch: dict[str, Any], key: jax.Array):
        outputs = model_of(params, frozen)(batch["x"], train=True, key=key, **model_inputs(batch))
        return loss_and_metrics(outputs, batch, task)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def summed_loss_fn(params: PyTree, frozen: PyTree, batch: dict[str, Any], key: jax.Array):
        outputs = model_of(params, frozen)(batch["x"], train=True, key=key, **model_inputs(batch))
        sums = weighted_sums(outputs, batch, task)
        return sums["loss"], sums

    summed_grad_fn = jax.value_and_grad(summed_loss_fn, has_aux=True)

    def gradients(params: PyTree, frozen: PyTree, batch: dict[str, Any], key: jax.Array):
        if grad_accum == 1:
            (_, metrics), grads = grad_fn(params, frozen, batch, key)
            return grads, metrics

        def split(a: jax.Array) -> jax.Array:
            return a.reshape(grad_accum, a.shape[0] // grad_accum, *a.shape[1:])

        # Per-token weights (text rows) put different numbers of targets in each micro-batch:
        # the mean over all of them is then the summed loss over the summed weight, not a
        # mean of micro-batch means. Rows weighed alike keep the mean of means.
        per_token = batch.get("weight") is not None and batch["weight"].ndim > 1
        fn = summed_grad_fn if per_token else grad_fn

        def micro(carry, xs):
            index, mb = xs
            (_, metrics), grads = fn(params, frozen, mb, jax.random.fold_in(key, index))
            return jax.tree.map(jnp.add, carry, (grads, metrics)), None

        micro_batches = jax.tree.map(split, batch)
        first = jax.tree.map(lambda a: a[0], micro_batches)
        (_, metric_shapes), grad_shapes = jax.eval_shape(fn, params, frozen, first, key)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (grad_shapes, metric_shapes))
        (grads, metrics), _ = jax.lax.scan(micro, zeros, (jnp.arange(grad_accum), micro_batches))
        if per_token:
            total = jnp.where(metrics["weight"] > 0, metrics["weight"], 1.0)
            return jax.tree.map(lambda g: g / total, grads), means(metrics)
        return jax.tree.map(lambda g: g / grad_accum, (grads, metrics))

    dropout_root = jax.random.key(dropout_seed)
    leaves = len(jax.tree.leaves(parts.params.to_pure_dict()))
    report = StepReport(metrics=(*METRICS[task], "lr", "grad_norm"), param_leaves=leaves)

    def fingerprint(state: PyTree) -> dict[str, jax.Array]:
        return {"params": device_fingerprints(state["params"]), "opt": device_fingerprints(state["opt"])}

    def update(state: PyTree, batch: dict[str, Any]) -> tuple[PyTree, jax.Array]:
        step = state["step"]
        grads, metrics = gradients(state["params"], state["frozen"], batch, jax.random.fold_in(dropout_root, step))
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"params": params, "frozen": state["frozen"], "opt": opt, "step": step + 1}
        metrics = {**metrics, "lr": schedule(step), "grad_norm": optax.global_norm(grads)}
        values = jnp.stack([jnp.asarray(metrics[name], jnp.float32) for name in report.metrics])
        return new, lax.bitcast_convert_type(values, jnp.uint32)

    def train(state: PyTree, batch: dict[str, Any]) -> tuple[PyTree, jax.Array]:
        new, metrics = update(state, batch)
        fps = fingerprint(new)
        return new, jnp.concatenate([metrics, fps["params"].reshape(-1), fps["opt"].reshape(-1)])

    def evaluate(state: PyTree, batch: dict[str, Any]) -> dict[str, jax.Array]:
        outputs = model_of(state["params"], state["frozen"])(batch["x"], train=False, key=None, **model_inputs(batch))
        return weighted_sums(outputs, batch, task)

    out = (state_shardings, replicated)
    return Steps(
        train=jax.jit(train, donate_argnums=0, out_shardings=out),
        train_unhashed=jax.jit(update, donate_argnums=0, out_shardings=out),
        report=report,
        evaluate=jax.jit(evaluate, out_shardings=replicated),
        fingerprint=jax.jit(fingerprint, out_shardings=replicated),
        snapshot=jax.jit(lambda tree: jax.tree.map(jnp.copy, tree)),
    )


@dataclass
class StepCompilations:
    """Counts the train steps' compilations while entered (a context manager).

    Counted from JAX's public monitoring events: one per executable built (or
    loaded from the persistent cache), named after the jitted function. A run
    reports the count so a recompiling step shows; the unhashed variant counts
    when `train.ledger_every` used it.
    """

    count: int = 0
    _listener: Callable[..., None] | None = field(default=None, repr=False)

    def _heard(self, event: str, seconds: float, **fields: Any) -> None:
        if event == _BACKEND_COMPILE and fields.get("fun_name") in TRAIN_STEPS:
            self.count += 1

    def __enter__(self) -> StepCompilations:
        self._listener = self._heard
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            jax.monitoring.unregister_event_duration_listener(self._listener)
            self._listener = None
