"""Losses and metrics per task, as weighted sums so evaluation aggregates exactly.

A mean of per-batch means is wrong when batches differ in real examples (the
last eval batch is padded). Each batch therefore yields sums of
`weight * value` and the weight total; adding those over batches and dividing
once gives the exact mean over all real examples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

__all__ = ["METRICS", "eval_means", "loss_and_metrics", "means", "per_example", "weighted_sums"]

METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("loss", "accuracy"),
    "regression": ("loss", "mse"),
    "lm": ("loss", "accuracy"),
}
"""Metric names each task reports (`loss` is the training objective)."""


def per_example(outputs: jax.Array, targets: jax.Array, task: str) -> dict[str, jax.Array]:
    """Unreduced metrics in float32: shape [B] (or [B, T] for `lm`)."""
    outputs = outputs.astype(jnp.float32)
    if task in ("classification", "lm"):
        labels = targets.astype(jnp.int32)
        loss = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
        correct = (jnp.argmax(outputs, axis=-1) == labels).astype(jnp.float32)
        return {"loss": loss, "accuracy": correct}
    if task == "regression":
        err = jnp.square(outputs - targets.astype(jnp.float32))
        return {"loss": err, "mse": err}
    raise ValueError(f"unknown task '{task}'")


def _broadcast_weight(weight: jax.Array | None, like: jax.Array) -> jax.Array:
    # An example's weight covers each of its tokens, so `lm` means are per token.
    if weight is None:
        return jnp.ones(like.shape, jnp.float32)
    w = weight.astype(jnp.float32)
    return jnp.broadcast_to(w.reshape(w.shape + (1,) * (like.ndim - w.ndim)), like.shape)


def weighted_sums(outputs: jax.Array, batch: Mapping[str, jax.Array], task: str) -> dict[str, jax.Array]:
    """`sum(weight * value)` per metric plus the weight total under `"weight"`.

    Without a `weight` entry every example counts 1. Sums from several batches
    may be added leaf by leaf before `means`.
    """
    values = per_example(outputs, batch["y"], task)
    w = _broadcast_weight(batch.get("weight"), values["loss"])
    # `where`, not just `w * v`: a padding row's output may be inf or NaN, and 0 * NaN is NaN.
    sums = {name: jnp.sum(jnp.where(w > 0, w * v, 0.0)) for name, v in values.items()}
    sums["weight"] = jnp.sum(w)
    return sums


def means(sums: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Weighted means from (possibly accumulated) `weighted_sums`."""
    total = sums["weight"]
    # A batch may hold no target at all (a prompt truncated to seq_len leaves no completion token):
    # its means are 0, not NaN. Any positive total divides exactly as before.
    total = jnp.where(total > 0, total, 1.0)
    return {name: value / total for name, value in sums.items() if name != "weight"}


def eval_means(totals: Mapping[str, float], task: str) -> dict[str, float]:
    """Evaluation metrics from summed `weighted_sums` on the host; a language model also
    reports perplexity per token, exp of the mean token loss (not a mean itself, so it is
    derived from the exact total rather than summed)."""
    weight = totals["weight"]
    metrics = {name: value / weight for name, value in totals.items() if name != "weight"}
    if task == "lm":
        metrics["perplexity"] = math.exp(min(metrics["loss"], 700.0))  # exp(709) is float64's largest
    return metrics


def loss_and_metrics(
    outputs: jax.Array, batch: Mapping[str, jax.Array], task: str
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The scalar float32 loss to differentiate and the metrics (including `loss`)."""
    metrics = means(weighted_sums(outputs, batch, task))
    return metrics["loss"], metrics
