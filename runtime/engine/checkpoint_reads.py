"""Reading checkpoints as evidence: read-only, and proven to be the bytes that were saved.

Whoever reads a checkpoint it did not just write (resume's base weights of a
LoRA run, the audit of a run directory, a live run's retired steps) opens the
folder read-only: nothing there is created, tidied or deleted. A state is
restored without a target (the reader need not know the saver's optimizer or
mesh: it lands on one local device when the saving mesh is not here), and must
hash to the full hash its record holds; the canonical hash is invariant to
that layout. That check is what catches flipped bytes: Orbax stores raw array
chunks without checksums and would otherwise hand back corrupted values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from expspec.errors import BadInput
from expspec.runtime.engine.hashing import full_hash
from expspec.runtime.types import PyTree

__all__ = [
    "CheckpointDamaged",
    "committed_steps",
    "hash_mismatch",
    "newest_record",
    "read_only_manager",
    "read_verified",
]

_ITEMS = ("state", "meta")
_REASON_LIMIT = 200
_LIST_TRIES = 3
_SETTLE_S = 60.0
"""How long a failed restore's remaining reads may take to finish before their loop closes."""


class CheckpointDamaged(BadInput):
    """A checkpoint that cannot serve as evidence (unreadable, or not the bytes that
    were saved), with a reason that fits one line."""

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


class _SettlingLoop(asyncio.SelectorEventLoop):
    """An event loop that, closed while reads are still in flight, lets them finish first.

    Orbax restores the leaves of a tree concurrently on an event loop of its own.
    When one read fails (a file removed by a live run, or damaged), it raises at
    once and closes that loop while TensorStore is still reading the other leaves;
    each of those reads then reports to the closed loop, and TensorStore prints a
    "RuntimeError: Event loop is closed" traceback from its own thread. Closing
    only after the reads have settled removes that at its cause.
    """

    def close(self) -> None:
        pending = [task for task in asyncio.all_tasks(self) if not task.done()] if not self.is_closed() else []
        if pending and not self.is_running():
            done, _ = self.run_until_complete(asyncio.wait(pending, timeout=_SETTLE_S))
            for task in done:  # their failures come from what failed the restore, already raised
                if not task.cancelled():
                    task.exception()
        super().close()


class _SettlingPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _SettlingLoop()


@contextmanager
def _settled_reads() -> Iterator[None]:
    """Orbax's event loops, created through the policy, are settling loops meanwhile."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_SettlingPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


@contextmanager
def read_only_manager(directory: Path) -> Iterator[ocp.CheckpointManager]:
    with _quiet_orbax(), _settled_reads():
        options = ocp.CheckpointManagerOptions(
            read_only=True, create=False, cleanup_tmp_directories=False, save_interval_steps=0
        )
        manager = ocp.CheckpointManager(directory.absolute(), item_names=_ITEMS, options=options)
        try:
            yield manager
        finally:
            manager.close()


def committed_steps(directory: Path) -> list[int]:
    """Steps with a finished checkpoint; half-written Orbax temporaries are not evidence."""
    if not directory.is_dir():
        return []
    for attempt in range(_LIST_TRIES):
        try:
            with read_only_manager(directory) as manager:
                return sorted(manager.all_steps())
        except Exception:  # a step folder removed by a live run while Orbax lists it
            if attempt == _LIST_TRIES - 1 or not directory.is_dir():
                raise
    return []


def read_verified(directory: Path, step: int) -> tuple[PyTree, dict[str, Any]]:
    """The state and record saved at `step`, proven to be the bytes that were saved.

    Every failure, including a state that no longer hashes to its record, is a
    `CheckpointDamaged`, so the caller can report it (or refuse) and move on.
    """
    if not directory.is_dir():
        raise CheckpointDamaged(step, f"no checkpoint directory at {directory}")
    try:
        with read_only_manager(directory) as manager:
            if step not in manager.all_steps():
                raise CheckpointDamaged(step, f"no finished checkpoint for step {step} in {directory}")
            # A checkpoint saved on a mesh this process does not have (8 devices, read
            # on 1) lands whole on one local device instead.
            local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(fallback_sharding=local), meta=ocp.args.JsonRestore()
            )
            restored = manager.restore(step, args=args)
            state, meta = restored.state, restored.meta
    except CheckpointDamaged:
        raise
    except Exception as error:  # Orbax and tensorstore raise many unrelated types.
        raise CheckpointDamaged(step, _reason(error)) from error
    if not isinstance(meta, dict):
        raise CheckpointDamaged(step, f"metadata is a {type(meta).__name__}, not a JSON object")
    if not isinstance(state, dict):
        raise CheckpointDamaged(step, f"state is a {type(state).__name__}, not a mapping")
    if meta.get("step") != step:
        raise CheckpointDamaged(step, f"metadata records step {meta.get('step')!r}")
    # The runtime saves device arrays, which a restore without a target gives back
    # as device arrays; the audit compares on the host.
    state = jax.device_get(state)
    try:
        mismatch = hash_mismatch(state, meta)
    except Exception as error:
        raise CheckpointDamaged(step, _reason(error)) from error
    if mismatch is not None:
        raise CheckpointDamaged(step, mismatch)
    return dict(state), dict(meta)


def hash_mismatch(host_state: PyTree, meta: dict[str, Any]) -> str | None:
    """Why a restored state is not the one its record describes (one line), or None when it is.

    The one check behind every verified read (resume, the audit, base weights):
    the state, on the host, must hash to the full hash recorded when it was saved.
    """
    recorded = meta.get("full_hash")
    if not isinstance(recorded, str):
        return "metadata has no full_hash to verify the state against"
    actual = full_hash(host_state)
    if actual != recorded:
        return f"state hashes to {actual[:12]}, but {recorded[:12]} was recorded"
    return None


def newest_record(directory: Path) -> tuple[int, dict[str, Any]] | None:
    """The newest committed checkpoint in `directory` whose JSON record reads, and that record."""
    if not directory.is_dir():
        return None
    with read_only_manager(directory) as manager:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            except Exception:  # an unreadable record is judged when that checkpoint is restored
                continue
            if isinstance(meta, dict):
                return step, dict(meta)
    return None
