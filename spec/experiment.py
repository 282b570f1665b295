"""The whole experiment: the root of a spec file."""

from __future__ import annotations

import difflib

from pydantic import model_validator

from .data import CustomData, DataSpec, TextChars
from .determinism import DeterminismSpec, PinnedSeeds
from .fields import SpecModel, operational, trajectory
from .model import CustomModel, ModelSpec, Transformer
from .optimizer import AdamW, OptimizerSpec
from .rules import rule_error
from .training import CheckpointSpec, LoggingSpec, MeshSpec, ThrottleSpec, TrainSpec
from .types import Name

__all__ = ["BASE_STREAMS", "Experiment", "stream_names"]

BASE_STREAMS = ("init", "dropout", "data.shuffle", "data.split", "data.augment", "eval")
"""Seed streams every experiment has; custom components add their own."""


class Experiment(SpecModel):
    """An experiment: what to train, on what, how, and what reproducibility to promise."""

    name: Name = operational()
    """Run name; the default run directory is `runs/<name>`."""
    seed: int = trajectory(0, ge=0, le=2**63 - 1)
    """Root seed; every stream's seed is derived from it and the stream's name."""
    description: str = operational("", max_length=10_000)
    """Free text for people."""
    model: ModelSpec = trajectory()
    """The network."""
    data: DataSpec = trajectory()
    """The data source."""
    # Default sections are made with `model_construct`: validating them here would
    # build their validators at import, which the deferred build exists to avoid
    # (tests/spec/test_fields.py checks that each one validates unchanged).
    optimizer: OptimizerSpec = trajectory(AdamW.model_construct(kind="adamw"))
    """The optimizer and its schedule."""
    train: TrainSpec = trajectory()
    """Length, accumulation, cadence and precision."""
    checkpoint: CheckpointSpec = operational(CheckpointSpec.model_construct())
    """Checkpoint policy."""
    throttle: ThrottleSpec = operational(ThrottleSpec.model_construct())
    """Dispatch throttle."""
    seeds: PinnedSeeds = trajectory({})
    """Pinned seed streams by name, e.g. `data.shuffle = 1234`."""
    determinism: DeterminismSpec = trajectory(DeterminismSpec.model_construct())
    """Reproducibility contract."""
    mesh: MeshSpec = operational(MeshSpec.model_construct())
    """Device mesh."""
    logging: LoggingSpec = operational(LoggingSpec.model_construct())
    """Metric sinks besides `metrics.jsonl` (TensorBoard), and a profiler trace."""

    @model_validator(mode="after")
    def _cross_section_rules(self) -> Experiment:
        if self.data.batch_size % self.train.grad_accum:
            raise rule_error(
                "train.grad_accum",
                f"must divide data.batch_size ({self.data.batch_size})",
                got=self.train.grad_accum,
            )
        if self.checkpoint.save == "lora" and self.model.lora is None:
            raise rule_error(
                "checkpoint.save",
                'is "lora" but model.lora is not set; add [model.lora] or save = "full"',
                got="lora",
            )
        if isinstance(self.model, Transformer) and isinstance(self.data, TextChars):
            if self.data.seq_len > self.model.max_len:
                raise rule_error(
                    "data.seq_len",
                    f"exceeds model.max_len ({self.model.max_len})",
                    got=self.data.seq_len,
                )
        known = stream_names(self)
        for name in self.seeds:
            if name not in known:
                near = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else f"; streams: {', '.join(known)}"
                raise rule_error(("seeds", name), f"no seed stream named '{name}'{hint}", got=name)
        return self


def stream_names(experiment: Experiment) -> tuple[str, ...]:
    """All seed streams of an experiment, in a fixed order."""
    extra = []
    if experiment.model.lora is not None:
        extra.append("lora")
    if isinstance(experiment.model, CustomModel):
        extra.append("custom.model")
    if isinstance(experiment.data, CustomData):
        extra.append("custom.data")
    return BASE_STREAMS + tuple(extra)
