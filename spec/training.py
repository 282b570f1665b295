"""The `[train]`, `[checkpoint]`, `[throttle]`, `[mesh]` and `[logging]` sections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .fields import SpecModel, operational, trajectory
from .rules import rule_error
from .sizes import ByteSize
from .trackers import MlflowSpec, WandbSpec
from .types import NonEmptyStr

__all__ = ["CheckpointSpec", "LoggingSpec", "MeshSpec", "ProfileSpec", "ThrottleSpec", "TrainSpec"]

DType = Literal["float32", "bfloat16", "float16"]


class TrainSpec(SpecModel):
    """How long to train and how often to look."""

    steps: int = operational(gt=0, le=10**9)
    """Optimizer steps to run. Operational: a schedule that decays "until the end"
    is resolved to an explicit `decay_steps` in the plan, which carries the math."""
    grad_accum: int = trajectory(1, gt=0, le=4096)
    """Micro-batches accumulated per optimizer step; must divide `data.batch_size`."""
    eval_every: int = operational(0, ge=0, le=10**9)
    """Evaluate on the held-out split every this many steps (0: only at the end)."""
    log_every: int = operational(10, gt=0, le=10**9)
    """Write training metrics every this many steps."""
    ledger_every: int = operational(1, gt=0, le=10**9)
    """Record a parameter fingerprint in the ledger every this many steps."""
    dtype: DType = trajectory("float32")
    """Compute dtype of activations."""
    param_dtype: DType = trajectory("float32")
    """Storage dtype of parameters and optimizer state."""
    eval_generate: int = operational(0, ge=0, le=1 << 16)
    """At each evaluation, also complete this many held-out prompts by greedy decoding and
    report `exact_match`: the share whose completion is exactly the record's (prompt/completion
    text data with a decoder model; 0: off)."""


class CheckpointSpec(SpecModel):
    """When and what to checkpoint. On by default; cadence never changes the bits."""

    enabled: bool = operational(True)
    """Write checkpoints (and resume from them)."""
    dir: NonEmptyStr | None = operational(None, path=True)
    """Checkpoint folder; unset means `checkpoints/` inside the run directory.
    Relative paths resolve against the spec file's folder."""
    every_steps: int = operational(100, ge=0, le=10**9)
    """Save after every this many steps (and always at the last step); 0 saves by
    `every_seconds` alone. Unset when `every_seconds` is set: 0."""
    every_seconds: float | None = operational(None, gt=0, le=10**7)
    """Also save once this many seconds have passed since the attempt's start or its
    last save: the cadence for steps too short to checkpoint every N of them."""
    keep_last: int = operational(3, gt=0, le=10**6)
    """Keep the newest this many checkpoints."""
    keep_every: int | None = operational(None, gt=0, le=10**9)
    """Also keep, permanently, every checkpoint whose step is a multiple of this."""
    async_: bool = operational(True, alias="async")
    """Write in the background so training does not wait for the disk."""
    save: Literal["full", "lora"] = operational("full")
    """`full`: parameters and optimizer state; `lora`: only the adapters and their
    optimizer state (needs `model.lora`)."""
    on_preemption: bool = operational(True)
    """On SIGTERM/SIGINT, finish the step, save, and exit as preempted, ready to resume."""
    writer: Literal["auto", "process", "thread"] = operational("auto")
    """Who runs Orbax's saves: `process`, a writer process beside the run (the training
    process only copies the state into shared memory, so Orbax's fixed cost per save
    does not take the loop's time); `thread`, Orbax's own background threads in the
    training process; `auto`, the process for a single-process run of at least 1,000
    steps and 10 saves of a state up to 1 GiB, threads otherwise (a cluster always
    uses threads: its saves are collective)."""

    @model_validator(mode="before")
    @classmethod
    def _seconds_alone(cls, data: Any) -> Any:
        if isinstance(data, dict) and "every_seconds" in data and "every_steps" not in data:
            return {**data, "every_steps": 0}
        return data

    @model_validator(mode="after")
    def _keep_every_is_multiple(self) -> CheckpointSpec:
        if self.keep_every is not None and not self.every_steps:
            raise rule_error("keep_every", "needs checkpoint.every_steps: saves by time fall on no fixed steps")
        if self.keep_every is not None and self.keep_every % self.every_steps:
            raise rule_error(
                "keep_every",
                f"must be a multiple of checkpoint.every_steps ({self.every_steps}), "
                "or no checkpoint is ever kept by it",
                got=self.keep_every,
            )
        return self


MAX_INFLIGHT = 1024


def _inflight(value: Any) -> Any:
    # One error for every bad value, instead of one per member of the union below.
    if value == "auto" or (type(value) is int and 0 < value <= MAX_INFLIGHT):
        return value
    raise PydanticCustomError("inflight", f'must be an integer from 1 to {MAX_INFLIGHT}, or "auto"')


Inflight = Annotated[
    Annotated[int, Field(gt=0, le=MAX_INFLIGHT)] | Literal["auto"],
    BeforeValidator(_inflight),
]


class ThrottleSpec(SpecModel):
    """Bounds on asynchronous dispatch."""

    max_inflight: Inflight = operational(2)
    """Steps dispatched to the device but not yet finished; the loop blocks on the
    oldest beyond this (as Tunix's `max_inflight_computations`). `"auto"` chooses
    it when the run starts, from the compiled train step's memory analysis and
    `memory_budget`."""
    memory_budget: ByteSize | None = operational(None)
    """Memory the in-flight steps may use with `max_inflight = "auto"`: bytes, or a
    string such as "8GiB" or "500MB". Unset: 90% of the accelerator's memory, or
    half of the host's available memory on CPU."""

    @model_validator(mode="after")
    def _budget_needs_auto(self) -> ThrottleSpec:
        if self.memory_budget is not None and self.max_inflight != "auto":
            raise rule_error(
                "memory_budget",
                f'is only used with max_inflight = "auto" (max_inflight is {self.max_inflight}); '
                'remove it or set throttle.max_inflight = "auto"',
                got=self.memory_budget,
            )
        return self


class MeshSpec(SpecModel):
    """Device mesh axes. The mesh enters the environment class, not the trajectory:
    the same spec on another mesh is compared by distance, not bits."""

    data: int = operational(1, ge=-1, le=1 << 20)
    """Data-parallel axis size; -1 takes all devices left."""
    fsdp: int = operational(1, ge=-1, le=1 << 20)
    """Parameter-sharding axis size; -1 takes all devices left."""

    @model_validator(mode="after")
    def _sizes(self) -> MeshSpec:
        for axis in ("data", "fsdp"):
            if getattr(self, axis) == 0:
                raise rule_error(axis, "must be a positive size or -1", got=0)
        if self.data == -1 and self.fsdp == -1:
            raise rule_error("fsdp", "only one of mesh.data and mesh.fsdp may be -1", got=-1)
        return self


class ProfileSpec(SpecModel):
    """A window of training steps traced by the JAX profiler."""

    start: int = operational(gt=0, le=10**9)
    """First step traced (steps count from 1): the trace starts just before it is dispatched."""
    steps: int = operational(gt=0, le=10**6)
    """How many steps are traced: the trace stops once step `start + steps - 1` has finished."""


class LoggingSpec(SpecModel):
    """Where metrics go besides `metrics.jsonl`, which is always written; what else is traced."""

    tensorboard: bool = operational(False)
    """Also write every record of `metrics.jsonl` as TensorBoard scalars (`train/<name>`,
    `eval/<name>`) into the run directory's `tensorboard/` folder. Needs tensorboardX:
    `pip install 'expspec[tensorboard]'`."""
    profile: ProfileSpec | None = operational(None)
    """Trace steps `start` .. `start + steps - 1` with `jax.profiler` into the run directory's
    `profile/` folder (process 0 of a cluster), for TensorBoard's profile plugin or Perfetto.
    Written `profile = { start = 100, steps = 5 }`; unset: no trace."""
    wandb: WandbSpec | None = operational(None)
    """Also log the run to Weights & Biases: its metrics, plan, fingerprints, events and audit
    verdicts. Written `wandb = { project = "digits", mode = "offline" }`; unset: no W&B run.
    Needs wandb: `pip install 'expspec[wandb]'`."""
    mlflow: MlflowSpec | None = operational(None)
    """Also log the run to MLflow: its metrics, plan, fingerprints, events and audit verdicts.
    Written `mlflow = { tracking_uri = "file:mlruns", experiment = "digits" }`; unset: no
    MLflow run. Needs MLflow: `pip install 'expspec[mlflow]'`."""
