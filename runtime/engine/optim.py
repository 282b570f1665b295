"""Optax optimizers and schedules from the resolved spec."""

from __future__ import annotations

import optax

from expspec.spec.optimizer import SGD, Adam, AdamW, Constant, Cosine, Lion, Momentum, OptimizerSpec, ScheduleSpec

__all__ = ["build_optimizer", "build_schedule"]


def build_schedule(spec: ScheduleSpec, peak: float) -> optax.Schedule:
    """Linear warm-up to `peak`, then the schedule's shape.

    `decay_steps` is always set in a resolved plan (the compiler fills it in).
    """
    if isinstance(spec, Constant):
        after = optax.constant_schedule(peak)
    elif isinstance(spec, Cosine):
        after = optax.cosine_decay_schedule(peak, spec.decay_steps or 1, alpha=spec.final_fraction)
    else:
        after = optax.linear_schedule(peak, peak * spec.final_fraction, spec.decay_steps or 1)
    if not spec.warmup_steps:
        return after
    warmup = optax.linear_schedule(0.0, peak, spec.warmup_steps)
    return optax.join_schedules([warmup, after], [spec.warmup_steps])


def build_optimizer(spec: OptimizerSpec) -> optax.GradientTransformation:
    """The full update rule: clipping, weight decay, the optimizer, the schedule.

    Built once per run: a new transform object would retrace the train step.
    """
    lr = build_schedule(spec.schedule, spec.learning_rate)
    if isinstance(spec, AdamW):
        core = optax.adamw(lr, b1=spec.b1, b2=spec.b2, eps=spec.eps, weight_decay=spec.weight_decay)
    elif isinstance(spec, Lion):
        core = optax.lion(lr, b1=spec.b1, b2=spec.b2, weight_decay=spec.weight_decay)
    else:
        if isinstance(spec, Adam):
            base = optax.adam(lr, b1=spec.b1, b2=spec.b2, eps=spec.eps)
        elif isinstance(spec, Momentum):
            base = optax.sgd(lr, momentum=spec.momentum, nesterov=spec.nesterov)
        else:
            assert isinstance(spec, SGD)
            base = optax.sgd(lr)
        # Coupled decay (L2 added to the gradient) for optimizers without their own.
        core = optax.chain(optax.add_decayed_weights(spec.weight_decay), base) if spec.weight_decay else base
    if spec.grad_clip_norm is not None:
        return optax.chain(optax.clip_by_global_norm(spec.grad_clip_norm), core)
    return core
