"""Checkpoint policy and dispatch throttle, resolved from the spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from expspec.spec import Experiment
from expspec.spec.sizes import parse_bytes

__all__ = ["CheckpointPolicy", "ThrottlePlan", "resolve_checkpoint", "resolve_throttle"]


class CheckpointPolicy(BaseModel):
    """When to save, what, where, and what to keep."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    enabled: bool
    directory: str
    """Where checkpoints go; relative paths resolve against `relative_to`."""
    relative_to: Literal["run_dir", "spec_dir"]
    every_steps: int
    """0: no step cadence (time alone, or the final and preemption saves)."""
    every_seconds: float | None = None
    keep_last: int
    keep_every: int | None
    """Steps that are multiples of this are kept permanently."""
    async_save: bool = Field(alias="async")
    save: Literal["full", "lora"]
    on_preemption: bool
    writer: Literal["auto", "process", "thread"] = "auto"
    save_final: bool
    """Whether the last step is saved whatever the interval (the checkpointer adds it
    to its save decision); on whenever checkpoints are."""


class ThrottlePlan(BaseModel):
    """Dispatch bounds for the train loop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_inflight: int | Literal["auto"]
    """Steps in flight; `auto` is chosen by the runtime, which alone can compile the
    step and see the device."""
    memory_budget: int | None = None
    """Bytes the in-flight steps may use under `auto`; None: the runtime's default
    share of the device (or host) memory."""


def resolve_checkpoint(experiment: Experiment) -> CheckpointPolicy:
    spec = experiment.checkpoint
    return CheckpointPolicy(
        enabled=spec.enabled,
        directory=spec.dir if spec.dir is not None else "checkpoints",
        relative_to="run_dir" if spec.dir is None else "spec_dir",
        every_steps=spec.every_steps,
        every_seconds=spec.every_seconds,
        keep_last=spec.keep_last,
        keep_every=spec.keep_every,
        async_save=spec.async_,
        save=spec.save,
        on_preemption=spec.on_preemption and spec.enabled,
        save_final=spec.enabled,
        writer=spec.writer,
    )


def resolve_throttle(experiment: Experiment) -> ThrottlePlan:
    spec = experiment.throttle
    budget = None if spec.memory_budget is None else parse_bytes(spec.memory_budget)
    return ThrottlePlan(max_inflight=spec.max_inflight, memory_budget=budget)
