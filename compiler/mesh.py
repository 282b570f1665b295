"""The mesh plan: device axes and the rules that lay arrays out on them.

Pure arithmetic on shapes, no JAX: `exp plan --explain` shows the same layout
the runtime builds, because both call `partition` with the same numbers.

Rules. The mesh has two axes, `data` and `fsdp`. A batch is split along its
first dimension over both (every device sees its own examples, as in FSDP).
An array of the train state (parameter, optimizer moment, LoRA base weight) is
split over `fsdp` along its largest dimension that `fsdp` divides evenly (the
first such one on a tie); when none does, or `fsdp` is 1, it is replicated.
The `data` axis always replicates the state.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from expspec.errors import BadInput
from expspec.spec import Experiment

__all__ = [
    "AXES",
    "BATCH_AXES",
    "MeshError",
    "MeshPlan",
    "partition",
    "resolve_mesh",
    "resolve_mesh_plan",
    "shard_shape",
]

AXES = ("data", "fsdp")
"""Mesh axis names, outermost first: `data` groups devices that hold whole copies."""
BATCH_AXES = AXES
"""The axes a batch's first dimension is split over."""


class MeshError(BadInput, ValueError):
    """The mesh does not fit the devices there are; the message names the spec key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class MeshPlan(BaseModel):
    """The spec's `[mesh]`, with -1 ("all devices left") kept until the runtime
    knows how many devices there are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: int
    fsdp: int

    def describe(self) -> str:
        def size(n: int) -> str:
            return "all devices left" if n == -1 else str(n)

        return f"data {size(self.data)} x fsdp {size(self.fsdp)}"


def resolve_mesh_plan(experiment: Experiment) -> MeshPlan:
    return MeshPlan(data=experiment.mesh.data, fsdp=experiment.mesh.fsdp)


def resolve_mesh(plan: MeshPlan, devices: int, *, whole: bool = False) -> dict[str, int]:
    """Axis sizes on `devices` devices: -1 takes what the other axis leaves.

    With `whole` (a multi-process cluster) the mesh must use every device:
    a process with no device in the mesh would have nothing to compute.
    """
    data, fsdp = plan.data, plan.fsdp
    if data == -1 or fsdp == -1:
        key, known = ("mesh.data", fsdp) if data == -1 else ("mesh.fsdp", data)
        if devices % known:
            raise MeshError(key, f"{key} = -1 needs the {devices} devices to divide by the other axis, {known}")
        data, fsdp = (devices // fsdp, fsdp) if data == -1 else (data, devices // data)
    used = data * fsdp
    if used > devices:
        raise MeshError("mesh.data", f"mesh.data x mesh.fsdp = {used} devices, but only {devices} are visible")
    if whole and used != devices:
        raise MeshError(
            "mesh.data",
            f"mesh.data x mesh.fsdp = {used} devices, but the cluster has {devices}: "
            "every process needs devices in the mesh (mesh.data = -1 uses them all)",
        )
    return {"data": data, "fsdp": fsdp}


def check_batch(batch_size: int, sizes: dict[str, int]) -> None:
    """Refuse a batch that does not split evenly over the data x fsdp devices."""
    ways = sizes["data"] * sizes["fsdp"]
    if batch_size % ways:
        raise MeshError(
            "data.batch_size",
            f"data.batch_size = {batch_size} does not split over the mesh's {ways} data x fsdp devices",
        )


def partition(shape: Sequence[int], fsdp: int) -> tuple[str | None, ...]:
    """The partition spec of a state array: which dimension (if any) is split over `fsdp`."""
    axes: list[str | None] = [None] * len(shape)
    if fsdp > 1:
        candidates = [i for i, n in enumerate(shape) if n % fsdp == 0 and n >= fsdp]
        if candidates:
            axes[max(candidates, key=lambda i: (shape[i], -i))] = "fsdp"
    return tuple(axes)


def shard_shape(shape: Sequence[int], spec: Sequence[str | None], sizes: dict[str, int]) -> tuple[int, ...]:
    """The shape of one device's piece of an array laid out by `spec`."""
    return tuple(n // sizes[axis] if axis else n for n, axis in zip(shape, spec, strict=True))
