"""Reading a finished run's checkpoints without touching them.

An audit inspects evidence, so opening a run directory must never create,
clean up or delete anything there: the manager is opened read-only. States are
restored without a target, because the audit has no model to build one from
(onto one local device when the saving mesh is not there);
the canonical hash is invariant to that (lists come back as dicts keyed "0",
"1", ...), which lets every read be checked against the hash recorded at save
time. That check is what catches flipped bytes: Orbax stores raw array chunks
without checksums and would otherwise hand back corrupted values silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from exp.runtime.hashing import full_hash

__all__ = ["CheckpointUnreadable", "SavedCheckpoint", "checkpoint_steps", "read_checkpoint"]

_ITEMS = ("state", "meta")
_REASON_LIMIT = 200


@dataclass(frozen=True)
class SavedCheckpoint:
    step: int
    state: dict[str, Any]
    meta: dict[str, Any]


class CheckpointUnreadable(Exception):
    """A checkpoint the audit cannot use as evidence, with a reason that fits one report line."""

    def __init__(self, step: int, reason: str) -> None:
        self.step = step
        self.reason = _one_line(reason)
        super().__init__(f"checkpoint {step} is unreadable: {self.reason}")


def _one_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    line = lines[0].strip() if lines else ""
    return line if len(line) <= _REASON_LIMIT else line[: _REASON_LIMIT - 3] + "..."


def _reason(error: BaseException) -> str:
    first = _one_line(str(error))
    return _one_line(f"{type(error).__name__}: {first}" if first else type(error).__name__)


@contextmanager
def _quiet_orbax() -> Iterator[None]:
    # Orbax warns through absl on every read-only open; the audit prints its own
    # clean report, and failures reach the caller as exceptions anyway.
    logger = logging.getLogger("absl")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextmanager
def _manager(directory: Path) -> Iterator[ocp.CheckpointManager]:
    with _quiet_orbax():
        options = ocp.CheckpointManagerOptions(
            read_only=True, create=False, cleanup_tmp_directories=False, save_interval_steps=0
        )
        manager = ocp.CheckpointManager(directory.absolute(), item_names=_ITEMS, options=options)
        try:
            yield manager
        finally:
            manager.close()


def checkpoint_steps(directory: Path) -> list[int]:
    """Steps with a finished checkpoint; half-written Orbax temporaries are not evidence."""
    if not directory.is_dir():
        return []
    with _manager(directory) as manager:
        return sorted(manager.all_steps())


def read_checkpoint(directory: Path, step: int) -> SavedCheckpoint:
    """The state and record saved at `step`, proven to be the bytes that were saved.

    Every failure, including a state that no longer hashes to its record, is a
    `CheckpointUnreadable`, so the audit can report it and move on.
    """
    if not directory.is_dir():
        raise CheckpointUnreadable(step, f"no checkpoint directory at {directory}")
    try:
        with _manager(directory) as manager:
            if step not in manager.all_steps():
                raise CheckpointUnreadable(step, f"no finished checkpoint for step {step} in {directory}")
            # A checkpoint saved on a mesh this process does not have (8 devices, read
            # on 1) lands whole on one local device instead.
            local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(fallback_sharding=local), meta=ocp.args.JsonRestore()
            )
            restored = manager.restore(step, args=args)
            state, meta = restored.state, restored.meta
    except CheckpointUnreadable:
        raise
    except Exception as error:  # Orbax and tensorstore raise many unrelated types.
        raise CheckpointUnreadable(step, _reason(error)) from error
    if not isinstance(meta, dict):
        raise CheckpointUnreadable(step, f"metadata is a {type(meta).__name__}, not a JSON object")
    if not isinstance(state, dict):
        raise CheckpointUnreadable(step, f"state is a {type(state).__name__}, not a mapping")
    if meta.get("step") != step:
        raise CheckpointUnreadable(step, f"metadata records step {meta.get('step')!r}")
    recorded = meta.get("full_hash")
    if not isinstance(recorded, str):
        raise CheckpointUnreadable(step, "metadata has no full_hash to verify the state against")
    # The runtime saves device arrays, which a restore without a target gives back
    # as device arrays; the audit compares on the host.
    state = jax.device_get(state)
    try:
        actual = full_hash(state)
    except Exception as error:
        raise CheckpointUnreadable(step, _reason(error)) from error
    if actual != recorded:
        raise CheckpointUnreadable(step, f"state hashes to {actual[:12]}, metadata records {recorded[:12]}")
    return SavedCheckpoint(step=step, state=dict(state), meta=dict(meta))
