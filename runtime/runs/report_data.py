"""What `exp report` shows, read from a run directory without touching it.

Only reads: a report may be made of a run that is still training, so nothing
here takes the run's lock or repairs a torn line (the last line of a file
being written is skipped instead). Library logic, read by `exp report`'s page
and plots; imports no JAX and no matplotlib.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from expspec.audit.ledger import read_ledger
from expspec.errors import BadInput
from expspec.runtime.runs.records import ignore_damage, read_jsonl
from expspec.runtime.runs.run_files import Event, RunFiles, attempt_outcome, attempts

__all__ = ["MARKED_EVENTS", "Agreement", "ReportError", "RunRecords", "read_run"]

Agreement = Literal["agree", "disagree", "single"]

MARKED_EVENTS = (Event.RESUME, Event.PREEMPTED, Event.STOPPED, Event.ERROR)
"""Events drawn on the curves: where an attempt ended and where the next one took over."""

_SHOWN = {"unended": "running or killed", "none": "no events"}


class ReportError(BadInput, ValueError):
    """The directory is not a readable run directory; the message is one line."""


@dataclass
class RunRecords:
    """Everything the page shows, as plain data."""

    run_dir: Path
    plan: dict[str, Any]
    env: dict[str, Any]
    events: list[dict[str, Any]]
    train: list[dict[str, Any]]
    """Train-split metric records, one per step (a step logged again by a later attempt: the later record)."""
    eval: list[dict[str, Any]]
    agreement: dict[int, Agreement]
    """Each ledger step: whether the attempts that recorded it agree, or only one did."""
    checkpoints: dict[int, str]
    audits: list[dict[str, Any]]
    markers: list[tuple[str, int]] = field(default_factory=list)
    """(event, step) for every marked event, in the order they happened."""

    @property
    def outcome(self) -> str:
        """How the latest attempt ended: finished, stopped, preempted, error, or running/killed."""
        how = attempt_outcome(reversed(self.events)).how
        return _SHOWN.get(how, how)

    @property
    def attempts(self) -> int:
        return attempts(self.events)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot read {what}: {getattr(err, 'strerror', None) or err}") from None
    except ValueError as err:
        raise ReportError(f"{path}: {what} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ReportError(f"{path}: {what} is not a JSON object")
    return value


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        records = read_jsonl(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    except ValueError as err:
        raise ReportError(f"{path}: a line is not valid JSON ({err})") from None
    return [r for r in records if isinstance(r, dict)]


def _read_audits(path: Path) -> list[dict[str, Any]]:
    """Audit verdicts; a line torn by a killed audit is skipped. Audits append
    after a torn line instead of cutting it (the file is never rewritten), so
    unlike the run's own records a bad line can sit in the middle."""
    try:
        return read_jsonl(path, ignore_damage)
    except OSError as err:
        raise ReportError(f"{path}: cannot read: {err.strerror or err}") from None


def _latest_per_step(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per step, the last written winning (steps redone after a kill are logged again)."""
    by_step = {r["step"]: r for r in records if isinstance(r.get("step"), int)}
    return [by_step[s] for s in sorted(by_step)]


def _agreement(run_dir: Path) -> tuple[dict[int, Agreement], dict[int, str]]:
    path = RunFiles(run_dir).ledger
    try:
        ledger = read_ledger(run_dir)
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ReportError(f"{path}: not a ledger ({type(err).__name__}: {err})") from None
    seen: dict[int, list[Any]] = {}
    for attempt in sorted(ledger.attempts):
        for step, record in ledger.attempts[attempt].items():
            seen.setdefault(step, []).append(record)
    out: dict[int, Agreement] = {}
    for step in sorted(seen):
        records = seen[step]
        if len(records) == 1:
            out[step] = "single"
        else:
            out[step] = "agree" if all(r.same_bits(records[0]) for r in records[1:]) else "disagree"
    return out, dict(ledger.checkpoints)


def read_run(run_dir: Path) -> RunRecords:
    """The records of `run_dir`; `ReportError` when it is not a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such directory")
    files = RunFiles(run_dir)
    if not files.plan.is_file():
        raise ReportError(f"{run_dir}: not a run directory (no {files.plan.name})")
    plan = _read_json(files.plan, "the plan")
    env = _read_json(files.env, "the environment")
    events = _read_lines(files.events)
    metrics = _read_lines(files.metrics)
    agreement, checkpoints = _agreement(run_dir)
    markers = [
        (str(e["event"]), int(e["step"]))
        for e in events
        if e.get("event") in MARKED_EVENTS and isinstance(e.get("step"), int)
    ]
    return RunRecords(
        run_dir=run_dir,
        plan=plan,
        env=env,
        events=events,
        train=_latest_per_step([m for m in metrics if m.get("split") == "train"]),
        eval=_latest_per_step([m for m in metrics if m.get("split") == "eval"]),
        agreement=agreement,
        checkpoints=checkpoints,
        audits=_read_audits(files.audits),
        markers=markers,
    )
