"""Checkpoints through Orbax's `CheckpointManager` and its own policy objects.

The plan's policy compiles into Orbax policies: `FixedIntervalPolicy` plus the
final step to decide saves, `LatestN` (and `EveryNSteps` for permanent ones) to
decide what is kept. Saves that policy does not cover (preemption, `--stop-at`)
are forced. A checkpoint holds the train state and a JSON record with the step,
the plan fingerprints and the state's full canonical hash, so a restore can be
proved exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from exp.compiler import CheckpointPolicy

from .types import PyTree

__all__ = ["Checkpointer", "abstract_like"]


def abstract_like(tree: PyTree) -> PyTree:
    """Shape/dtype/sharding stand-ins of `tree`: the restore target, so Orbax
    restores into the exact layout the uninterrupted run uses."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Saves and restores `{"state": pytree, "meta": json}` per step."""

    def __init__(self, directory: Path, policy: CheckpointPolicy, total_steps: int) -> None:
        decide = policies.AnySavePolicy(
            [policies.FixedIntervalPolicy(policy.every_steps), policies.SpecificStepsPolicy([total_steps])]
        )
        keep: list[Any] = [policies.LatestN(policy.keep_last)]
        if policy.keep_every:
            keep.append(policies.EveryNSteps(policy.keep_every))
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=decide,
            preservation_policy=policies.AnyPreservationPolicy(keep) if len(keep) > 1 else keep[0],
            enable_async_checkpointing=policy.async_save,
            # A save still being written must not make the next interval save skip.
            enable_should_save_is_saving_in_progress_check=False,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.directory = directory.absolute()
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "meta"), options=options)

    def due(self, step: int) -> bool:
        """Whether the policy saves at `step`."""
        return self.manager.should_save(step)

    def save(self, step: int, state: PyTree, meta: dict[str, Any], *, force: bool = False) -> bool:
        """Save (in the background when async); returns whether a save started."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        return self.manager.save(step, args=args, force=force)

    def steps(self) -> list[int]:
        """Finished checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def restore(self, step: int, target: PyTree) -> tuple[PyTree, dict[str, Any]]:
        """The state saved at `step`, laid out like `target`, and its record."""
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(target)), meta=ocp.args.JsonRestore())
        restored = self.manager.restore(step, args=args)
        return restored.state, dict(restored.meta)

    def read_meta(self, step: int) -> dict[str, Any]:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta)

    def saving(self) -> bool:
        """Whether a background write is still in progress."""
        return self.manager.is_saving_in_progress()

    def wait(self) -> None:
        """Block until background writes are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
