"""Checkpoints through Orbax's `CheckpointManager` and its own policy objects.

The plan's policy compiles into Orbax policies: `FixedIntervalPolicy` plus the
final step to decide saves, `LatestN` (and `EveryNSteps` for permanent ones) to
decide what is kept. Saves that policy does not cover (preemption, `--stop-at`)
are forced. A checkpoint holds the train state and a JSON record with the step,
the plan fingerprints and the state's full canonical hash, so a restore can be
proved exact.

Another run's checkpoints (a LoRA base) are read through `read_verified`: a
read-only manager that creates, tidies and deletes nothing there, and a state
that must hash to its record, since Orbax stores raw chunks without checksums.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from exp.compiler import CheckpointPolicy

from .cluster import SINGLE, Cluster, barrier
from .hashing import full_hash
from .types import PyTree

__all__ = [
    "COMMIT_MARKER",
    "CheckpointDamaged",
    "Checkpointer",
    "abstract_like",
    "newest_record",
    "read_verified",
    "saved_steps",
]

COMMIT_MARKER = "commit_success.txt"
"""Orbax writes it last; a step folder without it was never finished."""

_UNFINISHED = re.compile(r"^\d+\.orbax-checkpoint-tmp")


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
        self.every_steps, self.total_steps = policy.every_steps, total_steps
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

        Every process of a cluster calls it; the primary alone moves the folder."""
        target = self._move(self.directory / str(step), why) if self.cluster.primary else None
        barrier(self.cluster, f"set-aside-{step}")
        self.manager.reload()
        return target

    def due(self, step: int) -> bool:
        """Whether the policy saves at `step`: the arithmetic of the save decision policy.

        Asked every step, so it must not cost Orbax's `should_save` (which walks its
        policies and step list); `save` still lets Orbax decide.
        """
        return step % self.every_steps == 0 or step == self.total_steps

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


class CheckpointDamaged(Exception):
    """A checkpoint that cannot be read, or does not restore to the hash recorded at save."""

    def __init__(self, step: int, reason: str) -> None:
        self.step = step
        self.reason = (str(reason).strip().splitlines() or [""])[0][:200]
        super().__init__(f"checkpoint {step}: {self.reason}")


@contextmanager
def _read_only(directory: Path) -> Iterator[ocp.CheckpointManager]:
    # Orbax warns through absl on every read-only open; failures still raise.
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    options = ocp.CheckpointManagerOptions(
        read_only=True, create=False, cleanup_tmp_directories=False, save_interval_steps=0
    )
    try:
        with ocp.CheckpointManager(directory.absolute(), item_names=("state", "meta"), options=options) as manager:
            yield manager
    finally:
        logger.setLevel(level)


def saved_steps(directory: Path) -> list[int]:
    """Committed checkpoints in another run's `directory`, oldest first (read-only)."""
    if not directory.is_dir():
        return []
    with _read_only(directory) as manager:
        return sorted(manager.all_steps())


def newest_record(directory: Path) -> tuple[int, dict[str, Any]] | None:
    """The newest committed checkpoint in `directory` whose JSON record reads, and that record (read-only)."""
    if not directory.is_dir():
        return None
    with _read_only(directory) as manager:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            except Exception:  # an unreadable record is judged when that checkpoint is restored
                continue
            if isinstance(meta, dict):
                return step, dict(meta)
    return None


def read_verified(directory: Path, step: int) -> tuple[PyTree, dict[str, Any]]:
    """The host state and record saved at `step` in `directory`, proven to be the saved bytes.

    Restored without a target (the reader need not know the saver's optimizer),
    onto one local device when the saving mesh is not here; the canonical hash
    is invariant to that. Raises `CheckpointDamaged` for anything else.
    """
    try:
        with _read_only(directory) as manager:
            if step not in manager.all_steps():
                raise CheckpointDamaged(step, f"no committed checkpoint for step {step} in {directory}")
            local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(fallback_sharding=local), meta=ocp.args.JsonRestore()
            )
            restored = manager.restore(step, args=args)
            state, meta = jax.device_get(restored.state), restored.meta
        digest = full_hash(state)
    except CheckpointDamaged:
        raise
    except Exception as err:  # Orbax and TensorStore raise plain exceptions for unreadable bytes
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointDamaged(step, f"cannot be read: {type(err).__name__}: {first}") from err
    if not isinstance(meta, dict) or not isinstance(meta.get("full_hash"), str):
        raise CheckpointDamaged(step, "its record has no full_hash to verify the state against")
    if digest != meta["full_hash"]:
        raise CheckpointDamaged(step, f"restores to hash {digest[:12]}, but {meta['full_hash'][:12]} was recorded")
    return state, dict(meta)
