"""Reading a run's checkpoints without touching them, while it trains or after.

An audit inspects evidence: it reads through the runtime's verified read
(`expspec.runtime.engine.checkpoint_reads`), which opens the folder read-only and proves
each restored state against the hash recorded when it was saved.

A live run retires old checkpoints while the audit reads them. A read that
fails, or a hash that does not match, is therefore looked at again before it is
called corruption: a checkpoint whose folder went away or lost files meanwhile,
or that a live run no longer lists, was retired while being read, which says
nothing about its bits. Only a checkpoint that stays and fails a second read is
reported as bad.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expspec.runtime.engine.checkpoint_reads import CheckpointDamaged, committed_steps, read_verified

__all__ = [
    "CheckpointSurvey",
    "CheckpointUnreadable",
    "SavedCheckpoint",
    "checkpoint_steps",
    "read_checkpoint",
    "survey_checkpoints",
]

CheckpointUnreadable = CheckpointDamaged
"""A checkpoint the audit cannot use as evidence (the runtime's verified read raises it)."""

checkpoint_steps = committed_steps
"""Steps with a finished checkpoint; half-written Orbax temporaries are not evidence."""


@dataclass(frozen=True)
class SavedCheckpoint:
    step: int
    state: dict[str, Any]
    meta: dict[str, Any]


def read_checkpoint(directory: Path, step: int) -> SavedCheckpoint:
    """The state and record saved at `step`, proven to be the bytes that were saved
    (`CheckpointUnreadable` otherwise)."""
    state, meta = read_verified(directory, step)
    return SavedCheckpoint(step=step, state=state, meta=meta)


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
