"""The `[determinism]` and `[seeds]` sections: what reproducibility is promised."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Strict, WithJsonSchema, model_validator

from .fields import SpecModel, operational, trajectory
from .rules import rule_error
from .types import UInt31

__all__ = ["Contract", "DeterminismSpec", "PinnedSeeds", "flatten_seed_table"]

Contract = Literal["bitwise", "tolerance", "none"]


class DeterminismSpec(SpecModel):
    """The reproducibility contract and the settings that earn it."""

    contract: Contract = operational("bitwise")
    """`bitwise`: same trajectory and environment class give identical bits, resumed or
    not. `tolerance`: results agree within `tolerance`. `none`: nothing is promised."""
    deterministic_ops: bool | None = trajectory(None)
    """Use only deterministic kernels (XLA's GPU flags); unset means on exactly when
    the contract is `bitwise`."""
    matmul_precision: Literal["default", "high", "highest"] = trajectory("default")
    """JAX's default matmul precision (`highest` disables TF32/bf16 passes on accelerators)."""
    threefry_partitionable: bool = trajectory(True)
    """JAX's `jax_threefry_partitionable`: changes every random value, so it is trajectory."""
    cpu_threads: int = trajectory(2, ge=1, le=1024)
    """Size of XLA:CPU's intra-op thread pool (`NPROC`), pinned before JAX starts
    because it decides the bits of large reductions on CPU. Left to the machine it
    follows the core count, so a 1-core and a 16-core host disagree; pinned to 2 (the
    default) a 2-core CI runner, a single pinned core and a workstation agree."""
    tolerance: float | None = operational(None, gt=0, le=1)
    """Relative tolerance the `tolerance` contract promises; unset means 1e-5."""

    @model_validator(mode="after")
    def _consistent(self) -> DeterminismSpec:
        if self.contract == "bitwise" and self.deterministic_ops is False:
            raise rule_error(
                "deterministic_ops",
                'contradicts determinism.contract = "bitwise"; remove it or use contract = "tolerance"',
                got=False,
            )
        if self.tolerance is not None and self.contract != "tolerance":
            raise rule_error(
                "tolerance",
                f'only applies to contract = "tolerance" (contract is "{self.contract}")',
                got=self.tolerance,
            )
        return self


def flatten_seed_table(value: Any) -> Any:
    """`[seeds]` written with dotted keys (`data.shuffle = 1`) arrives nested from
    TOML; streams are named by the dotted path, so flatten it."""
    if not isinstance(value, dict):
        return value
    flat: dict[str, Any] = {}

    def walk(prefix: str, table: dict[Any, Any], depth: int) -> None:
        for key, item in table.items():
            name = f"{prefix}.{key}" if depth else str(key)
            if isinstance(item, dict) and depth < 8:
                walk(name, item, depth + 1)
            else:
                flat[name] = item

    walk("", value, 0)
    return flat


_SEED_TABLE_SCHEMA = {
    "type": "object",
    "description": "Pinned seed streams by name (e.g. `data.shuffle = 1234`); the others "
    "are derived from the root seed and the stream's name.",
    "additionalProperties": {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
            {"type": "object"},
        ]
    },
}

PinnedSeeds = Annotated[
    dict[str, UInt31],
    Strict(False),
    BeforeValidator(flatten_seed_table),
    WithJsonSchema(_SEED_TABLE_SCHEMA),
]
