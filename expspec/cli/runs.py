"""`exp runs`: a table of run directories and where each one stands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from expspec.exit_codes import ExitCode

from .console import echo, say
from .options import JSON, Param

if TYPE_CHECKING:
    from expspec.runtime.runs.status import RunStatus

HELP = """List run directories: status, step, last loss and eval metrics, trajectory, last audit.

Status is running (a live process holds the LOCK), done, stopped (--stop-at),
preempted (SIGTERM/SIGINT; run again to resume), failed (an error was recorded),
killed (ended without recording an end: SIGKILL, out of memory, a lost machine;
run again to resume) or not started. Nothing in the directories is changed.

Example: exp runs --json"""

_STATUS_STYLE = {"running": "blue", "done": "green", "preempted": "yellow", "failed": "red", "killed": "red"}


def _step(run: RunStatus) -> str:
    if run.step is None and run.total is None:
        return ""
    step = "?" if run.step is None else str(run.step)
    return f"{step}/{run.total if run.total is not None else '?'}"


def _eval(run: RunStatus) -> str:
    if not run.eval:
        return ""
    text = " ".join(f"{name} {value:.4g}" for name, value in sorted(run.eval.items()))
    return text if run.eval_step in (None, run.step) else f"{text} @{run.eval_step}"


def _audit(run: RunStatus) -> str:
    audit = run.audit or {}
    return f"{audit.get('check', '?')} {audit.get('status', '?')}" if audit else ""


def _render(runs: list[RunStatus]) -> None:
    from rich.table import Table
    from rich.text import Text

    from .console import stderr

    table = Table(show_edge=False, pad_edge=False)
    for column in ("run", "status", "step", "loss", "eval", "trajectory", "audit"):
        table.add_column(column, overflow="fold")
    for run in runs:
        table.add_row(
            run.name,
            Text(run.status, style=_STATUS_STYLE.get(run.status, "")),
            _step(run),
            "" if run.loss is None else f"{run.loss:.4g}",
            _eval(run),
            (run.trajectory or "")[:12],
            _audit(run),
        )
    console = stderr()
    console.print(table)
    for run in runs:
        if run.detail:
            console.print(f"{run.name}: {run.status}: {run.detail}", markup=False)


PARAMS = (
    Param("folder", Path, "A folder of run directories, or one run directory.", metavar="DIR", default=Path("runs")),
    JSON,
)


def command(folder: Path = Path("runs"), as_json: bool = False) -> int:
    """Exit code 0, or 2 when `folder` is not a directory."""
    from expspec.runtime.runs.status import find_runs, read_status

    if not folder.is_dir():
        say(f"{folder}: {'not a directory' if folder.exists() else 'no such directory'}")
        return ExitCode.BAD_INPUT
    found = find_runs(folder)
    runs = [read_status(path, str(path.relative_to(folder)) if path != folder else path.name) for path in found]
    if as_json:
        echo(json.dumps({"runs": [run.to_dict() for run in runs]}, indent=2, sort_keys=True))
        return ExitCode.OK
    if not runs:
        say(f"no run directories in {folder}")
        return ExitCode.OK
    _render(runs)
    return ExitCode.OK
