"""Checkpoints through Orbax's `CheckpointManager` and its own policy objects.

The plan's policy compiles into Orbax policies: `FixedIntervalPolicy` plus the
final step to decide saves, `LatestN` (and `EveryNSteps` for permanent ones) to
decide what is kept. Saves that policy does not cover (preemption, `--stop-at`)
are forced. A checkpoint holds the train state and a JSON record with the step,
the plan fingerprints and the state's full canonical hash, so a restore can be
proved exact.

Checkpoints this process did not just write (a LoRA base, an audited run) are
read through `checkpoint_reads`: read-only, and verified against their record.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from expspec.compiler import CheckpointPolicy
from expspec.runtime.processes.cluster import SINGLE, Cluster, barrier
from expspec.runtime.types import PyTree

__all__ = ["COMMIT_MARKER", "Checkpointer", "abstract_like", "manager_options"]

COMMIT_MARKER = "commit_success.txt"
"""Orbax writes it last; a step folder without it was never finished."""

_UNFINISHED = re.compile(r"^\d+\.orbax-checkpoint-tmp")


def manager_options(*, keep_last: int, keep_every: int | None, async_save: bool) -> ocp.CheckpointManagerOptions:
    """The manager's options, the same in the training process and in a writer process.

    The loop decides when to save (`Checkpointer.due`, the time policy) and saves
    with `force`, so no save decision policy is needed here; what to keep is Orbax's.
    """
    keep: list[Any] = [policies.LatestN(keep_last)]
    if keep_every:
        keep.append(policies.EveryNSteps(keep_every))
    return ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep) if len(keep) > 1 else keep[0],
        enable_async_checkpointing=async_save,
        # A save still being written must not make the next save skip.
        enable_should_save_is_saving_in_progress_check=False,
        cleanup_tmp_directories=True,
        create=True,
    )


def abstract_like(tree: PyTree) -> PyTree:
    """Shape/dtype/sharding stand-ins of `tree`: the restore target, so Orbax
    restores into the exact layout the uninterrupted run uses."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Saves and restores `{"state": pytree, "meta": json}` per step."""

    def __init__(
        self,
        directory: Path,
        policy: CheckpointPolicy,
        total_steps: int,
        quarantine: Path,
        cluster: Cluster = SINGLE,
    ) -> None:
        self.directory = directory.absolute()
        self.quarantine = quarantine
        self.cluster = cluster
        # One process moves folders; the others list them only once it is done.
        self.tidied = self._tidy() if cluster.primary else []
        barrier(cluster, "checkpoints-tidied")
        self.every_steps = policy.every_steps
        self.final_step = total_steps if policy.save_final else None
        self.options = {"keep_last": policy.keep_last, "keep_every": policy.keep_every, "async_save": policy.async_save}
        """`manager_options`' arguments, also for a writer process's manager."""
        options = manager_options(**self.options)
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "meta"), options=options)

    def _tidy(self) -> list[str]:
        """Clear what an interrupted save left behind, before Orbax lists the steps.

        Orbax's temporary folders are deleted (they were never a checkpoint);
        a step folder without its commit marker is set aside, since Orbax would
        otherwise count it as finished and skip later saves at or below its step.
        """
        notes: list[str] = []
        if not self.directory.is_dir():
            return notes
        for entry in sorted(self.directory.iterdir()):
            if _UNFINISHED.match(entry.name) and entry.is_dir():
                shutil.rmtree(entry)
                notes.append(f"removed the unfinished write {entry.name}")
            elif entry.name.isdigit() and entry.is_dir() and not (entry / COMMIT_MARKER).exists():
                notes.append(f"set aside step {entry.name} (never committed) as {self._move(entry, 'unfinished')}")
        return notes

    def _move(self, folder: Path, why: str) -> Path:
        target = self.quarantine / f"{folder.name}-{why}-{time.strftime('%Y%m%dT%H%M%S')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(target))
        return target

    def set_aside(self, step: int, why: str) -> Path | None:
        """Move a checkpoint out of Orbax's sight (kept for inspection, never deleted).

        Every process of a cluster calls it, for the same steps in the same order
        (each call is a barrier); the primary alone moves the folder, if it sees one."""
        folder = self.directory / str(step)
        target = self._move(folder, why) if self.cluster.primary and folder.is_dir() else None
        barrier(self.cluster, f"set-aside-{step}")
        self.manager.reload()
        return target

    def due(self, step: int) -> bool:
        """Whether the step policy saves at `step` (the time policy is the loop's: `SaveClock`).

        Asked every step, so it is arithmetic, not Orbax's `should_save` (which walks
        its policies and step list); the loop decides and Orbax saves what it is given.
        """
        return step == self.final_step or (self.every_steps > 0 and step % self.every_steps == 0)

    def save(self, step: int, state: PyTree, meta: dict[str, Any]) -> None:
        """Save in this process (in the background when async)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.manager.save(step, args=args, force=True)

    def steps(self) -> list[int]:
        """Finished checkpoints, oldest first (a writer process may have added some)."""
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def restore(self, step: int, target: PyTree) -> tuple[PyTree, dict[str, Any]]:
        """The state saved at `step`, laid out like `target`, and its record.

        Read by this process alone, through Orbax's item handlers: the manager's
        restore ends in a cross-process barrier, so in a cluster a member whose
        read fails would leave the others waiting there while it moves on to
        another collective (gloo aborts on the mismatch). In an FSDP layout each
        member reads only its own shards; the members agree on the outcome
        afterwards (`runtime/engine/resume.py`).
        """
        handler = ocp.StandardCheckpointHandler()
        try:
            args = ocp.args.StandardRestore(abstract_like(target))
            state = handler.restore(self._item(step, "state"), args=args)
        finally:
            handler.close()
        return state, self.read_meta(step)

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON record saved at `step` (read by this process alone, like `restore`)."""
        return dict(ocp.JsonCheckpointHandler().restore(self._item(step, "meta")))

    def _item(self, step: int, name: str) -> Path:
        folder = self.directory / str(step) / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such checkpoint item")
        return folder

    def committed(self, step: int) -> bool:
        """Whether the save of `step` has committed (one `stat`, no listing).

        Orbax commits a step by giving its folder the final name with the
        marker inside (a rename of the temporary folder, or on storage without
        renames the marker written last), so the folder under the step's own
        name holding the marker is the commit itself, never a write in progress.
        """
        return (self.directory / str(step) / COMMIT_MARKER).exists()

    def wait(self) -> None:
        """Block until background writes are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
