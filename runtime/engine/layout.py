"""Where arrays live: the mesh, the train state's shardings, batches split over it.

The rules are `expspec.compiler.mesh`'s (the same ones `exp plan --explain` shows);
this module turns them into `NamedSharding`s and global arrays. Every process
of a cluster holds the same host values (the seed tree makes initialisation and
batches identical everywhere) and contributes the pieces its own devices hold,
so nothing is sent between hosts to build a batch or the initial state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from expspec.compiler.mesh import AXES, BATCH_AXES, MeshPlan, partition, resolve_mesh
from expspec.runtime.processes.cluster import Cluster
from expspec.runtime.types import PyTree

__all__ = ["Layout", "make_layout"]


@dataclass(frozen=True)
class Layout:
    mesh: Mesh
    sizes: dict[str, int]
    """Axis name -> size, -1 resolved."""
    cluster: Cluster

    @property
    def trivial(self) -> bool:
        """One device, one process: arrays need no placing at all."""
        return self.mesh.size == 1 and not self.cluster.multi

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def sharding_of(self, shape: tuple[int, ...]) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(*partition(shape, self.sizes["fsdp"])))

    def state_shardings(self, tree: PyTree) -> PyTree:
        """The sharding of every array of a train state, by the fsdp rule."""
        return jax.tree.map(lambda leaf: self.sharding_of(tuple(np.shape(leaf))), tree)

    def place(self, tree: PyTree, shardings: PyTree) -> PyTree:
        """Host (or single-device) arrays laid out as global arrays with `shardings`."""
        if self.trivial:
            return jax.device_put(tree, shardings)

        def put(leaf: Any, sharding: NamedSharding) -> jax.Array:
            host = np.asarray(leaf)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        return jax.tree.map(put, tree, shardings)

    def place_batch(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """A host batch split along its first dimension over data x fsdp.

        On one device the host arrays go to the jitted step as they are: the
        step's C++ dispatch copies them in ten times faster than
        `jax.device_put`'s Python path, which small models would wait for.
        """
        if self.trivial:
            return batch
        sharding = NamedSharding(self.mesh, PartitionSpec(BATCH_AXES))
        if not self.cluster.multi:
            return jax.device_put(batch, sharding)
        return {
            name: jax.make_array_from_callback(value.shape, sharding, lambda index, v=value: v[index])
            for name, value in batch.items()
        }

    def record(self, state: PyTree) -> dict[str, Any]:
        """The layout as it is, read off the placed arrays: mesh, and every split array's spec."""
        from expspec.runtime.engine.hashing import canonical_leaves

        sharded = {
            path: list(leaf.sharding.spec)
            for path, leaf in canonical_leaves(state)
            if isinstance(getattr(leaf, "sharding", None), NamedSharding) and any(leaf.sharding.spec)
        }
        return {"mesh": self.sizes, "devices": self.mesh.size, "processes": self.cluster.count, "sharded": sharded}

    def to_host(self, tree: PyTree) -> PyTree:
        """NumPy copies of global arrays (in a cluster: a collective every process must join)."""
        if self.cluster.multi:
            tree = jax.jit(_identity, out_shardings=self.replicated)(tree)
        return jax.device_get(tree)


def _identity(tree: PyTree) -> PyTree:
    return tree


def make_layout(plan: MeshPlan, cluster: Cluster) -> Layout:
    """The mesh over this cluster's devices (all of them in a cluster; the first
    `data x fsdp` alone), data-major: an fsdp group sits within one process when it can."""
    devices = jax.devices()
    sizes = resolve_mesh(plan, len(devices), whole=cluster.multi)
    used = sizes["data"] * sizes["fsdp"]
    grid = np.array(devices[:used]).reshape(sizes["data"], sizes["fsdp"])
    return Layout(Mesh(grid, AXES), sizes, cluster)
