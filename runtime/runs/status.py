"""Where each run directory stands, read without touching anything in it.

A run is *running* exactly when a live process holds its LOCK: the kernel drops
an `flock` with its process, so a LOCK left by a killed run is not mistaken for
a live one. The probe is a non-blocking shared `flock`, released at once, on a
read-only descriptor: nothing is written, and a writer is never kept out for
longer than the probe itself. Otherwise the last of the events that start or
end an attempt says how the run ended; an attempt that started and recorded no
end was killed (SIGKILL, out of memory, a lost machine). A run is done only
with its `finished` record: one stopped after its last step without it still
has its final evaluation to do, as `exp run` does next. Records are read from
their end, so a long ledger costs no more than a short one, and a torn last
line (a writer killed mid-line) is skipped, never repaired.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from expspec.runtime.runs.records import records_backwards
from expspec.runtime.runs.run_files import AttemptOutcome, Event, Kind, RunFiles, attempt_outcome

__all__ = ["RunStatus", "Status", "find_runs", "lock_holder", "read_status"]

Status = Literal["running", "done", "stopped", "preempted", "failed", "killed", "not started"]

_ENDS: dict[str, Status] = {"finished": "done", "stopped": "stopped", "preempted": "preempted", "error": "failed"}
_MAX_DEPTH = 3
"""Folders below the listed one searched for runs (sweeps nest them)."""


@dataclass(frozen=True)
class RunStatus:
    """One run directory, as `exp runs` shows it."""

    name: str
    """The path relative to the folder listed."""
    path: str
    status: Status
    detail: str | None
    """Why it failed, who holds it, or at which signal it stopped."""
    experiment: str | None
    step: int | None
    total: int | None
    loss: float | None
    """The last training loss recorded (every `train.log_every` steps)."""
    eval: dict[str, float] | None
    eval_step: int | None
    trajectory: str | None
    audit: dict[str, Any] | None
    """The last line of audits.jsonl: time, check, status, summary."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lock_holder(root: Path) -> dict[str, Any] | None:
    """The LOCK holder's record when a live process holds a lock of `root` (any process
    of a cluster), else None: whether the run in `root` is live, without touching it."""
    for lock in RunFiles(root).locks():
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:  # UnicodeDecodeError included
                return {}
            return holder if isinstance(holder, dict) else {}
        finally:
            os.close(fd)  # closing releases the probe's lock at once
    return None


def _plan(root: Path) -> dict[str, Any]:
    """plan.json as data: a listing shows even a plan this version would refuse."""
    try:
        found = json.loads(RunFiles(root).plan.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def _metrics(root: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The last train and the last eval record."""
    train = evaluation = None
    for record in records_backwards(RunFiles(root).metrics):
        if train is None and record.get("split") == "train":
            train = record
        if evaluation is None and record.get("split") == "eval":
            evaluation = record
        if train is not None and evaluation is not None:
            break
    return train, evaluation


def _last_step(root: Path) -> int | None:
    for record in records_backwards(RunFiles(root).ledger):
        if record.get("kind") == Kind.STEP and isinstance(record.get("step"), int):
            return record["step"]
    return None


def _status(root: Path, outcome: AttemptOutcome) -> tuple[Status, str | None]:
    holder = lock_holder(root)
    if holder is not None:
        return "running", f"pid {holder['pid']} on {holder.get('host')}" if holder.get("pid") else None
    event = outcome.event or {}
    if outcome.how == "none":
        return "not started", "nothing recorded; it failed or was refused before its first step"
    if outcome.how == "unended":
        return "killed", (
            "ended without recording an end (SIGKILL, out of memory, a lost machine); "
            "run again to resume from its last checkpoint"
        )
    if outcome.how == Event.ERROR:
        error = str(event.get("error") or "")
        return "failed", error.splitlines()[0] if error else None
    if outcome.how == Event.PREEMPTED:
        return "preempted", f"by {event.get('signal') or 'a signal'}; run again to resume"
    return _ENDS[outcome.how], None


def _unfinished(status: Status, event: dict[str, Any] | None, step: int, total: int) -> str:
    """The detail of a run whose steps are done but whose end was never recorded.

    A run is done only with its `finished` record (the final evaluation, the final
    hash); the next `exp run` resumes at the last checkpoint and does what is missing.
    """
    if status == "preempted":
        by = (event or {}).get("signal") or "a signal"
        return f"by {by} at step {step}/{total}, before its final evaluation and records; run again to finish"
    return (
        f"ended at step {step}/{total} without recording its end (SIGKILL, out of memory, a lost machine); "
        "run again to finish"
    )


def read_status(root: Path, name: str | None = None) -> RunStatus:
    """Where the run in `root` stands; reads only."""
    plan = _plan(root)
    files = RunFiles(root)
    outcome = attempt_outcome(records_backwards(files.events))
    event = outcome.event
    status, detail = _status(root, outcome)
    train, evaluation = _metrics(root)
    # A clean end records its step; otherwise the ledger says how far it got.
    ended = outcome.how in (Event.FINISHED, Event.STOPPED, Event.PREEMPTED)
    candidates = [event.get("step")] if ended and event else []
    candidates += [_last_step(root), (train or {}).get("step"), (event or {}).get("step")]
    step = next((s for s in map(_integer, candidates) if s is not None), None)
    audit = next(records_backwards(files.audits), None)
    total = _get(plan, "spec", "train", "steps")
    if status in ("killed", "preempted") and step is not None and _integer(total) is not None and step >= total:
        detail = _unfinished(status, event, step, total)
    experiment, trajectory = _get(plan, "spec", "name"), _get(plan, "fingerprints", "trajectory")
    return RunStatus(
        name=name or root.name,
        path=str(root),
        status=status,
        detail=detail,
        experiment=experiment if isinstance(experiment, str) else None,
        step=step,
        total=_integer(total),
        loss=_number((train or {}).get("loss")),
        eval={k: v for k, v in evaluation.items() if k not in ("step", "split", "time") and _number(v) is not None}
        if evaluation
        else None,
        eval_step=_integer((evaluation or {}).get("step")),
        trajectory=trajectory if isinstance(trajectory, str) else None,
        audit=audit,
    )


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _is_run(folder: Path) -> bool:
    return RunFiles(folder).is_run()


def find_runs(folder: Path) -> list[Path]:
    """Run directories under `folder` (or `folder` itself), sorted by path; a run's own folders are not searched."""
    if _is_run(folder):
        return [folder]
    found: list[Path] = []

    def walk(here: Path, depth: int) -> None:
        try:
            children = sorted(p for p in here.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            if _is_run(child):
                found.append(child)
            elif depth < _MAX_DEPTH:
                walk(child, depth + 1)

    walk(folder, 1)
    return found
