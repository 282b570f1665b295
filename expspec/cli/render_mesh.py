"""The Mesh section of `exp plan --explain`: the axes, how batches split, and
where every parameter lives.

The layout comes from `compiler.mesh.partition`, the rule the runtime shards
the train state with, applied to `compiler.shapes` (the shapes the runtime will
build), so people see a run's layout before starting it, without JAX.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from expspec.compiler import Plan
from expspec.compiler.mesh import partition, resolve_mesh, shard_shape
from expspec.compiler.shapes import LeafShape, StateShapes, state_shapes

from .console import byte_size

__all__ = ["mesh_line", "render_mesh"]

_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def mesh_line(plan: Plan, devices: int | None) -> str:
    """The summary's mesh line: as the spec says it, and resolved for `--devices`."""
    text = plan.mesh.describe()
    if devices is not None:
        sizes = resolve_mesh(plan.mesh, devices)
        text += f"  (on {devices} devices: data {sizes['data']} x fsdp {sizes['fsdp']})"
    return text


def _sizes(plan: Plan, devices: int | None) -> tuple[int | None, int | None]:
    """(data, fsdp) sizes, None where -1 waits for a device count."""
    if devices is not None:
        sizes = resolve_mesh(plan.mesh, devices)
        return sizes["data"], sizes["fsdp"]
    data, fsdp = plan.mesh.data, plan.mesh.fsdp
    return (None if data == -1 else data), (None if fsdp == -1 else fsdp)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _spec(spec: tuple[str | None, ...]) -> str:
    """`(None, 'fsdp')` as `[-, fsdp]`: replicated dimensions are dashes."""
    return "[" + ", ".join(axis or "-" for axis in spec) + "]"


def _batches(plan: Plan, data: int | None, fsdp: int | None) -> str:
    batch, accum = plan.spec.data.batch_size, plan.spec.train.grad_accum
    text = f"data.batch_size {batch} split along its first dimension over data x fsdp"
    if data is None or fsdp is None:
        return text + ": per device, batch_size / devices (pass --devices N)"
    used = data * fsdp
    if batch % used:
        return text + f": {batch} does not split over {used} devices, so a run refuses it"
    text += f": {batch // used} examples per device per step"
    if accum > 1 and (batch // used) % accum == 0:
        text += f", {batch // used // accum} per micro-batch (train.grad_accum {accum})"
    return text


def _table(title: str, leaves: tuple[LeafShape, ...], fsdp: int | None) -> tuple[Table, int, int]:
    """The layout of one part of the state, with its total and per-device bytes."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("parameter", no_wrap=True)
    table.add_column("shape")
    table.add_column("dtype")
    if fsdp is not None:
        table.add_column("partition")
        table.add_column("per device")
    total = per_device = 0
    for leaf in leaves:
        width = _BYTES.get(leaf.dtype, 4)
        total += math.prod(leaf.shape) * width
        row = [leaf.path, _shape(leaf.shape), leaf.dtype]
        if fsdp is not None:
            spec = partition(leaf.shape, fsdp)
            shard = shard_shape(leaf.shape, spec, {"fsdp": fsdp})
            per_device += math.prod(shard) * width
            row += [_spec(spec), _shape(shard)]
        table.add_row(*row)
    return table, total, per_device


def render_mesh(console: Console, plan: Plan, spec_dir: Path, devices: int | None) -> None:
    """Print the Mesh section; `devices` (from --devices) resolves -1 axes."""
    data, fsdp = _sizes(plan, devices)
    console.print("Mesh (operational: the same spec on another mesh is compared by distance, not bits)")
    axes = plan.mesh.describe()
    if data is not None and fsdp is not None:
        used = data * fsdp
        axes = f"data {data} x fsdp {fsdp} = {used} device{'s' * (used > 1)}"
        if devices is not None and devices > used:
            axes += f" ({devices - used} of the {devices} given stay idle)"
    elif devices is None:
        axes += " (pass --devices N to resolve)"
    console.print(f"  axes     {axes}", markup=False)
    console.print(f"  batches  {_batches(plan, data, fsdp)}", markup=False)
    console.print(
        "  state    replicated over data; split over fsdp along each array's largest dimension "
        "fsdp divides (the first on a tie), replicated where none does",
        markup=False,
    )
    shapes = state_shapes(plan.spec, spec_dir)
    console.print()
    if not isinstance(shapes, StateShapes):
        console.print(f"Parameters: {shapes.reason}", markup=False)
        return
    parts = [("Trained parameters (state.params)", shapes.params)]
    if shapes.frozen:
        parts.append(("Frozen base weights (state.frozen)", shapes.frozen))
    for title, leaves in parts:
        table, total, per_device = _table(title, leaves, fsdp)
        if fsdp is None:
            table.caption = "mesh.fsdp = -1: pass --devices N to see each array's partition and shard"
        else:
            table.caption = f"{byte_size(total)} in all, {byte_size(per_device)} per device"
        table.caption_justify = "left"
        console.print(table)
    console.print("Optimizer moments follow their parameter's layout; scalars (step counts) are replicated.")
