"""The determinism contract compiled into the settings the runtime must apply."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from expspec.spec import Experiment
from expspec.spec.determinism import Contract

__all__ = ["DEFAULT_TOLERANCE", "DeterminismPlan", "resolve_determinism"]

DEFAULT_TOLERANCE = 1e-5

_PROMISES: dict[str, str] = {
    "bitwise": "same trajectory fingerprint and environment class give bit-identical "
    "parameters and optimizer state at every step, uninterrupted or resumed",
    "tolerance": "same trajectory fingerprint and environment class give parameters "
    "that agree within the relative tolerance at every step",
    "none": "nothing is promised; runs are not compared",
}


class DeterminismPlan(BaseModel):
    """What the contract promises and what the runtime sets before JAX starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contract: Contract
    promise: str
    deterministic_ops: bool
    tolerance: float | None
    jax_config: dict[str, bool | str]
    """`jax.config.update(name, value)` for each entry."""
    xla_flags: tuple[str, ...]
    """Appended to `XLA_FLAGS` before the backend initialises."""
    env: dict[str, str]
    """Environment variables set before the backend initialises."""

    def trajectory_part(self) -> dict[str, object]:
        """The settings that change the bits (the contract's wording does not)."""
        return {"jax_config": self.jax_config, "xla_flags": list(self.xla_flags), "env": self.env}


def resolve_determinism(experiment: Experiment) -> DeterminismPlan:
    spec = experiment.determinism
    deterministic_ops = spec.contract == "bitwise" if spec.deterministic_ops is None else spec.deterministic_ops
    jax_config: dict[str, bool | str] = {
        "jax_enable_x64": False,
        "jax_threefry_partitionable": spec.threefry_partitionable,
        "jax_default_matmul_precision": spec.matmul_precision,
    }
    # XLA:GPU picks kernels that use atomics unless told otherwise; the flag also
    # excludes non-deterministic ops from autotuning. XLA:CPU ignores it.
    xla_flags = ("--xla_gpu_deterministic_ops=true",) if deterministic_ops else ()
    tolerance = spec.tolerance
    if spec.contract == "tolerance" and tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    return DeterminismPlan(
        contract=spec.contract,
        promise=_PROMISES[spec.contract],
        deterministic_ops=deterministic_ops,
        tolerance=tolerance,
        jax_config=jax_config,
        xla_flags=xla_flags,
        env={"NPROC": str(spec.cpu_threads)},
    )
