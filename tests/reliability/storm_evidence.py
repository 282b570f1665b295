"""What a kill storm reads from a run directory to judge it: the checkpoint folders on
disk, a live view of the attempt being interrupted, and the ledger comparisons.

Everything here reads files directly (Orbax's commit marker, the checkpoint's JSON
record, the JSON-lines files) so the judge shares no code with what it judges.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.runtime.runs import ledger_records

COMMIT_MARKER = "commit_success.txt"
"""Orbax writes it into a step folder last, before the folder gets its final name."""

_UNFINISHED = re.compile(r"^\d+\.orbax-checkpoint-tmp")
_REJECTED = re.compile(r"^(\d+)-rejected-")
BEGINS = ("start", "resume")


@dataclass
class Disk:
    """What `checkpoints/` and `rejected/` held at one moment."""

    committed: dict[int, str | None]
    """step -> the full hash in its checkpoint's JSON record (None when unreadable)."""
    unfinished: list[str]
    """Temporary folders of writes in progress, and step folders newer than every committed one
    that lack the commit marker."""
    rejected: set[int]
    """Steps set aside after failing verification (they had committed)."""

    def newest(self) -> int | None:
        return max(self.committed, default=None)

    def retired(self, step: int, keep: int) -> bool:
        """Whether retention (keep the newest `keep`) may have deleted `step` since it committed."""
        kept = sorted(self.committed)
        return len(kept) >= keep and step < kept[-keep]

    def writing(self, saves: set[int], keep: int) -> bool:
        """Whether a write was in progress: a temporary folder, or one of `saves` (steps
        handed to Orbax) neither committed nor deleted by retention since."""
        return bool(self.unfinished) or any(s not in self.committed and not self.retired(s, keep) for s in saves)

    def explains(self, step: int, keep: int) -> bool:
        """Whether a ledger record of a committed checkpoint at `step` agrees with this disk."""
        return step in self.committed or step in self.rejected or self.retired(step, keep)


def _full_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / "meta" / "metadata").read_text())["full_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def look(run_dir: Path, keep: int) -> Disk:
    """The checkpoint folders of `run_dir` now (the process writing them must be stopped
    for the answer to be exact).

    Retention (keep the newest `keep`) deletes old step folders file by file, so a kill
    can leave one half deleted: an old folder without its marker, or with its marker and
    no readable record. Those are leftovers of a deletion, not writes or checkpoints.
    """
    disk = Disk({}, [], set())
    folder = run_dir / "checkpoints"
    markerless = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if _UNFINISHED.match(entry.name):
            disk.unfinished.append(entry.name)
        elif entry.name.isdigit() and entry.is_dir():
            if (entry / COMMIT_MARKER).exists():
                disk.committed[int(entry.name)] = _full_hash(entry)
            else:
                markerless.append(int(entry.name))
    for step in [s for s, digest in disk.committed.items() if digest is None and disk.retired(s, keep)]:
        del disk.committed[step]
    newest = disk.newest()
    disk.unfinished += [str(s) for s in markerless if newest is None or s > newest]
    for entry in (run_dir / "rejected").iterdir() if (run_dir / "rejected").is_dir() else []:
        if match := _REJECTED.match(entry.name):
            disk.rejected.add(int(match.group(1)))
    return disk


def writing(run_dir: Path) -> bool:
    """Whether a checkpoint write is visibly in progress (cheap: one directory listing)."""
    try:
        entries = list(os.scandir(run_dir / "checkpoints"))
    except FileNotFoundError:
        return False
    return any(
        _UNFINISHED.match(e.name) or (e.name.isdigit() and not os.path.exists(os.path.join(e.path, COMMIT_MARKER)))
        for e in entries
    )


def committed_steps(run_dir: Path) -> list[int]:
    """Steps whose checkpoint folder carries the commit marker (cheap)."""
    try:
        entries = list(os.scandir(run_dir / "checkpoints"))
    except FileNotFoundError:
        return []
    return sorted(
        int(e.name) for e in entries if e.name.isdigit() and os.path.exists(os.path.join(e.path, COMMIT_MARKER))
    )


class _Follow:
    """The complete records appended to a JSON-lines file since the last call.

    A torn last line waits for its end; a file made shorter (its torn tail cut by
    the next attempt) is read again from the start.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self.offset:
                    self.offset = 0
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line an earlier kill cut, before the runtime repaired it
                continue
        return out


@dataclass
class Attempt:
    """One `exp run` process's turn, as its events and ledger records show it."""

    number: int
    run_dir: Path
    begin: dict[str, Any] | None = None
    """Its `start` or `resume` event."""
    saves: set[int] = field(default_factory=set)
    """Steps whose checkpoint it handed to Orbax (`checkpoint_save` events)."""
    ended: str | None = None
    """`finished`, `preempted` or `stopped`, once recorded."""
    reached: int = -1
    """The newest step it recorded in the ledger."""

    def __post_init__(self) -> None:
        self._events = _Follow(self.run_dir / "events.jsonl")
        self._ledger = _Follow(self.run_dir / "ledger.jsonl")

    @property
    def start(self) -> int | None:
        return self.begin["step"] if self.begin else None

    def update(self) -> None:
        for event in self._events.new():
            name = event.get("event")
            if name in BEGINS and event.get("attempt") == self.number:
                self.begin = event
            elif self.begin is None:
                continue  # an earlier attempt's
            elif name == "checkpoint_save":
                self.saves.add(event["step"])
            elif name in ("finished", "preempted", "stopped"):
                self.ended = name
        for record in self._ledger.new():
            if record.get("kind") == "step" and record.get("attempt") == self.number:
                self.reached = max(self.reached, record["step"])


def attempts_begun(run_dir: Path) -> int:
    """How many attempts recorded their beginning: the number the next one takes."""
    path = run_dir / "events.jsonl"
    return sum(1 for e in _Follow(path).new() if e.get("event") in BEGINS) if path.exists() else 0


def begin_problem(attempt: Attempt, expected: int | None) -> str | None:
    """Why the attempt did not begin where the disk said it must: `resume` at the newest
    checkpoint committed when the previous attempt ended, or `start` when none had."""
    begin = attempt.begin
    if begin is None:
        return f"attempt {attempt.number} recorded no start or resume event"
    if expected is None and begin["event"] != "start":
        return f"attempt {attempt.number} resumed at step {begin['step']} though no checkpoint had committed"
    if expected is not None and (begin["event"], begin["step"]) != ("resume", expected):
        return (
            f"attempt {attempt.number} began with {begin['event']} at step {begin['step']}, "
            f"but the newest committed checkpoint was step {expected}"
        )
    return None


def unexplained_records(run_dir: Path, disk: Disk, keep: int) -> list[str]:
    """Checkpoint records in the ledger that name no checkpoint committed on `disk`."""
    return [
        f"the ledger records checkpoint {r['step']}, which is not committed on disk"
        for r in ledger_records(run_dir)
        if r.get("kind") == "checkpoint" and not disk.explains(r["step"], keep)
    ]


@dataclass
class Comparison:
    """Every ledger record of a storm's run against the uninterrupted run and the disk."""

    step_records: int = 0
    checkpoint_records: int = 0
    checkpoints_on_disk: int = 0
    problems: list[str] = field(default_factory=list)


def _one_per_step(records: list[dict[str, Any]], kind: str, value: Any, problems: list[str]) -> dict[int, Any]:
    """step -> the value every record of that step holds (a disagreement is a problem)."""
    seen: dict[int, set[Any]] = defaultdict(set)
    for record in records:
        if record.get("kind") == kind:
            seen[record["step"]].add(value(record))
    for step, values in sorted(seen.items()):
        if len(values) > 1:
            problems.append(f"{kind} {step} recorded {len(values)} different ways")
    return {step: next(iter(values)) for step, values in seen.items()}


def compare(run_dir: Path, straight_dir: Path, on_disk: dict[int, str | None], keep: int) -> Comparison:
    """Compare every ledger record of `run_dir` with `straight_dir`'s, and its checkpoint
    records with every checkpoint seen committed on disk during the storm (`on_disk`)."""
    out = Comparison()
    records, reference = ledger_records(run_dir), ledger_records(straight_dir)
    for kind in sorted({str(r.get("kind")) for r in records} - {"step", "leaves", "checkpoint"}):
        out.problems.append(f"ledger records of kind {kind!r} are not compared")

    def fingerprints(r: dict[str, Any]) -> tuple[str, str, str]:
        return (r["params"], r["opt"], r["leaves"])

    def paths(r: dict[str, Any]) -> str:
        return json.dumps([r["params"], r["opt"]])

    steps = _one_per_step(records, "step", fingerprints, out.problems)
    want_steps = _one_per_step(reference, "step", fingerprints, out.problems)
    out.step_records = sum(r.get("kind") == "step" for r in records)
    differ = sorted(s for s in steps.keys() | want_steps.keys() if steps.get(s) != want_steps.get(s))
    if differ:
        out.problems.append(f"step records differ from the uninterrupted run at {len(differ)} steps, first {differ[0]}")
    leaves = {paths(r) for r in records if r.get("kind") == "leaves"}
    if leaves != {paths(r) for r in reference if r.get("kind") == "leaves"}:
        out.problems.append("leaf paths differ from the uninterrupted run")

    saved = _one_per_step(records, "checkpoint", lambda r: r["full_hash"], out.problems)
    want_saved = _one_per_step(reference, "checkpoint", lambda r: r["full_hash"], out.problems)
    out.checkpoint_records = sum(r.get("kind") == "checkpoint" and r["step"] in want_saved for r in records)
    for step, digest in sorted(want_saved.items()):
        # Saves commit in step order, so every step the uninterrupted run saved committed
        # at some moment of the storm and must have its record.
        if step not in saved:
            out.problems.append(f"checkpoint {step} has no ledger record (the uninterrupted run recorded one)")
        elif saved[step] != digest:
            out.problems.append(f"checkpoint {step} recorded hash {saved[step]}, the uninterrupted run {digest}")

    out.checkpoints_on_disk = len(on_disk)
    for step, digest in sorted(on_disk.items()):
        if digest is None:
            out.problems.append(f"checkpoint {step} committed, but its JSON record has no readable full_hash")
        elif step not in saved:
            out.problems.append(f"checkpoint {step} committed on disk (hash {digest}) but has no ledger record")
        elif saved[step] != digest:
            out.problems.append(f"checkpoint {step}: ledger hash {saved[step]}, its folder's record {digest}")
    out.problems += unexplained_records(run_dir, look(run_dir, keep), keep)
    return out
