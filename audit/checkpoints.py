"""Reading a run's checkpoints without touching them, while it trains or after.

An audit inspects evidence, so opening a run directory must never create,
clean up or delete anything there: the manager is opened read-only. States are
restored without a target, because the audit has no model to build one from
(onto one local device when the saving mesh is not there);
the canonical hash is invariant to that (lists come back as dicts keyed "0",
"1", ...), which lets every read be checked against the hash recorded at save
time. That check is what catches flipped bytes: Orbax stores raw array chunks
without checksums and would otherwise hand back corrupted values silently.

A live run retires old checkpoints while the audit reads them. A read that
fails, or a hash that does not match, is therefore looked at again before it is
called corruption: a checkpoint whose folder went away or lost files meanwhile,
or that a live run no longer lists, was retired while being read, which says
nothing about its bits. Only a checkpoint that stays and fails a second read is
reported as bad.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from exp.runtime.hashing import full_hash

__all__ = [
    "CheckpointSurvey",
    "CheckpointUnreadable",
    "SavedCheckpoint",
    "checkpoint_steps",
    "read_checkpoint",
    "survey_checkpoints",
]

_ITEMS = ("state", "meta")
_REASON_LIMIT = 200
_LIST_TRIES = 3
_SETTLE_S = 60.0
"""How long a failed restore's remaining reads may take to finish before their loop closes."""


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
def _manager(directory: Path) -> Iterator[ocp.CheckpointManager]:
    with _quiet_orbax(), _settled_reads():
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
    for attempt in range(_LIST_TRIES):
        try:
            with _manager(directory) as manager:
                return sorted(manager.all_steps())
        except Exception:  # a step folder removed by a live run while Orbax lists it
            if attempt == _LIST_TRIES - 1 or not directory.is_dir():
                raise
    return []


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


@dataclass(frozen=True)
class CheckpointSurvey:
    """Every checkpoint of a directory, read against the hash recorded when it was saved."""

    verified: list[int]
    """Steps whose checkpoint restores to its recorded hash."""
    bad: dict[int, str]
    """Steps whose checkpoint stayed and still failed on a second read: why, in one line."""
    retired: list[int]
    """Steps whose checkpoint a live run removed while it was being read: evidence of nothing."""


def _files(folder: Path) -> frozenset[str] | None:
    """The files under `folder`, relative to it; None when the folder is not there."""
    if not folder.is_dir():
        return None
    return frozenset(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names
    )


def _problem(directory: Path, step: int, recorded: Mapping[int, str]) -> str | None:
    """Why the checkpoint at `step` is not the one recorded, or None when it is."""
    try:
        saved = read_checkpoint(directory, step)
    except CheckpointUnreadable as err:
        return f"unreadable: {err.reason}"
    digest = saved.meta["full_hash"]  # read_checkpoint proved the state hashes to it
    expected = recorded.get(step, digest)
    return None if digest == expected else f"restores to {digest[:12]}, recorded {str(expected)[:12]}"


def _retired(directory: Path, step: int, before: frozenset[str] | None, live: Callable[[], bool]) -> bool:
    """Whether the checkpoint at `step` went away while it was read, rather than staying as it is."""
    if before is not None:  # its folder was where the step's name puts it
        now = _files(directory / str(step))
        if now is None or not before <= now:
            return True
    return live() and step not in checkpoint_steps(directory)


def survey_checkpoints(directory: Path, recorded: Mapping[int, str], live: Callable[[], bool]) -> CheckpointSurvey:
    """Read every checkpoint in `directory` against `recorded` (step -> full hash; a step
    missing there is checked against the hash in its own metadata).

    `live` says whether a run holds the directory now. A failing checkpoint is looked
    at again: retired when it went away meanwhile, read a second time when it stayed,
    and bad only when it stays and fails again.
    """
    verified: list[int] = []
    bad: dict[int, str] = {}
    retired: list[int] = []
    for step in checkpoint_steps(directory):
        before = _files(directory / str(step))
        problem = _problem(directory, step, recorded)
        if problem is not None and not _retired(directory, step, before, live):
            problem = _problem(directory, step, recorded)  # it stayed: read it once more
        if problem is None:
            verified.append(step)
        elif _retired(directory, step, before, live):
            retired.append(step)
        else:
            bad[step] = problem
    return CheckpointSurvey(verified, bad, retired)
