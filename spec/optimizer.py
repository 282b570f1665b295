"""The `[optimizer]` section: an Optax optimizer and its learning-rate schedule."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .fields import SpecModel, trajectory

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Constant",
    "Cosine",
    "Linear",
    "Lion",
    "Momentum",
    "OptimizerSpec",
    "ScheduleSpec",
]

Steps = Annotated[int, Field(ge=0, le=10**9)]
Beta = Annotated[float, Field(ge=0, lt=1)]


class _Schedule(SpecModel):
    warmup_steps: Steps = trajectory(0)
    """Steps of linear warm-up from 0 to the peak learning rate."""


class Constant(_Schedule):
    """The peak learning rate after warm-up, held to the end."""

    kind: Literal["constant"] = trajectory()
    """Schedule shape."""


class _Decay(_Schedule):
    decay_steps: int | None = trajectory(None, gt=0, le=10**9)
    """Steps of decay after warm-up; unset means until `train.steps` (the plan
    records the resolved number, so `train.steps` itself never changes the math)."""
    final_fraction: float = trajectory(0.0, ge=0, le=1)
    """Learning rate at the end of the decay, as a fraction of the peak."""


class Cosine(_Decay):
    """Warm-up, then cosine decay to `final_fraction` of the peak."""

    kind: Literal["cosine"] = trajectory()
    """Schedule shape."""


class Linear(_Decay):
    """Warm-up, then linear decay to `final_fraction` of the peak."""

    kind: Literal["linear"] = trajectory()
    """Schedule shape."""


ScheduleSpec = Annotated[Constant | Cosine | Linear, Field(discriminator="kind")]


class _Optimizer(SpecModel):
    learning_rate: float = trajectory(1e-3, gt=0, le=1e3)
    """Peak learning rate."""
    weight_decay: float = trajectory(0.0, ge=0, le=10)
    """Weight decay: decoupled for `adamw` and `lion`, added to the gradient otherwise."""
    grad_clip_norm: float | None = trajectory(None, gt=0, le=1e9)
    """Clip the global gradient norm to this value before the update."""
    # Not validated here, as the sections' defaults in `Experiment`.
    schedule: ScheduleSpec = trajectory(Constant.model_construct(kind="constant"))
    """Learning-rate schedule."""


class SGD(_Optimizer):
    """Plain stochastic gradient descent."""

    kind: Literal["sgd"] = trajectory()
    """Optimizer family."""


class Momentum(_Optimizer):
    """SGD with heavy-ball or Nesterov momentum."""

    kind: Literal["momentum"] = trajectory()
    """Optimizer family."""
    momentum: Beta = trajectory(0.9)
    """Decay of the velocity."""
    nesterov: bool = trajectory(False)
    """Use Nesterov's look-ahead gradient."""


class Adam(_Optimizer):
    """Adam."""

    kind: Literal["adam"] = trajectory()
    """Optimizer family."""
    b1: Beta = trajectory(0.9)
    """Decay of the first-moment estimate."""
    b2: Beta = trajectory(0.999)
    """Decay of the second-moment estimate."""
    eps: float = trajectory(1e-8, gt=0, le=1)
    """Added to the denominator for numerical stability."""


class AdamW(Adam):
    """Adam with decoupled weight decay."""

    kind: Literal["adamw"] = trajectory()  # type: ignore[assignment]
    """Optimizer family."""
    weight_decay: float = trajectory(1e-4, ge=0, le=10)
    """Decoupled weight decay."""


class Lion(_Optimizer):
    """Lion (sign momentum); use a learning rate 3-10x smaller than Adam's."""

    kind: Literal["lion"] = trajectory()
    """Optimizer family."""
    b1: Beta = trajectory(0.9)
    """Interpolation between momentum and gradient for the update."""
    b2: Beta = trajectory(0.99)
    """Decay of the momentum."""


OptimizerSpec = Annotated[SGD | Momentum | Adam | AdamW | Lion, Field(discriminator="kind")]
