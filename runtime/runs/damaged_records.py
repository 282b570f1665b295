"""Damaged records met when a run resumes: skipped and named, never a reason to stop.

A kill tears at most the last line of a record file (`repair_tail` cuts it);
any other damage (an empty or garbage line, NUL blocks from a disk that lost
them, a truncated env.json) comes from outside, and the run's state is in its
checkpoints, not in these records. So a resumed run reads every record file
with the tolerant reader, skips what holds no record, and says where it was:
one `records_damaged` event naming each file, its damaged line numbers and
their count. Lines named once are not named again by later attempts. An
unreadable env.json is rewritten from the current environment; the event that
records it says the old one could not be read, so whether the environment
class changed is unknown rather than assumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from expspec.runtime.runs.records import DamagedRecord, ignore_damage, iter_records
from expspec.runtime.runs.run_files import Event, RunFiles

__all__ = ["DAMAGED_EVENT", "MAX_LINES", "read_env", "survey_records"]

DAMAGED_EVENT = Event.RECORDS_DAMAGED
MAX_LINES = 1000
"""Line numbers listed per file in one event (the count is always complete)."""


def _reported(events: Path) -> dict[str, set[int]]:
    """File name -> line numbers earlier attempts already named."""
    named: dict[str, set[int]] = {}
    for _, event in iter_records(events, ignore_damage):
        if event.get("event") != DAMAGED_EVENT or not isinstance(event.get("files"), dict):
            continue
        for name, entry in event["files"].items():
            lines = entry.get("lines") if isinstance(entry, dict) else None
            named.setdefault(name, set()).update(n for n in lines or () if isinstance(n, int))
    return named


def survey_records(rundir: RunFiles) -> dict[str, dict[str, Any]]:
    """File name -> {"count", "lines", "reason"} for the damaged lines of each record file
    that no earlier attempt named; empty when there are none."""
    named = _reported(rundir.events)
    found: dict[str, dict[str, Any]] = {}
    for path in rundir.record_files():
        damaged: list[DamagedRecord] = []
        for _ in iter_records(path, damaged.append):
            pass
        new = [d for d in damaged if d.line not in named.get(path.name, set())]
        if new:
            lines = [d.line for d in new]
            found[path.name] = {"count": len(new), "lines": lines[:MAX_LINES], "reason": new[0].reason}
    return found


def read_env(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The recorded env.json (None when there is none) and, when it cannot be read, why."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    try:
        data = json.loads(text)
    except ValueError as err:  # UnicodeDecodeError included
        return None, f"not valid JSON, truncated or damaged ({err})"
    if not isinstance(data, dict) or not isinstance(data.get("class"), dict):
        return None, "holds no environment class"
    return data, None
