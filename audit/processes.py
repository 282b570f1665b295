"""Starting `exp run` in fresh processes: the audit uses only the public entry point.

Every child goes through `children.spawn`, so a stopped audit stops it too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expspec.errors import BadInput
from expspec.exit_codes import ExitCode
from expspec.runtime.processes.child_command import exp_run_argv
from expspec.runtime.runs.records import DamagedRecord, parse_record
from expspec.runtime.runs.run_files import Kind, RunFiles

from .children import release, spawn

__all__ = [
    "KillMissed",
    "KilledRun",
    "RunError",
    "RunOutcome",
    "RunRequest",
    "StartedRun",
    "committed_checkpoints",
    "run_exp",
    "run_exp_killed",
    "start_exp",
    "stop_exp",
    "wait_exp",
]


class RunError(BadInput, RuntimeError):
    """A run the audit needed could not be carried out (bad spec, crash, refusal)."""


class KillMissed(RunError):
    """A run to be killed mid-training ended first, or went past the next checkpoint:
    the kill proves nothing about resuming from the cut. Trying again may succeed."""


@dataclass(frozen=True)
class RunRequest:
    """One `exp run` invocation."""

    spec: str
    run_dir: Path
    overrides: Sequence[str] = ()
    stop_at: int | None = None
    allow_imports: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return exp_run_argv(
            self.spec,
            self.overrides,
            self.run_dir,
            stop_at=self.stop_at,
            allow_imports=self.allow_imports,
            json=True,
            quiet=True,
        )


@dataclass(frozen=True)
class RunOutcome:
    request: RunRequest
    returncode: int
    summary: dict[str, Any] | None
    stderr: str
    seconds: float


def _finish(request: RunRequest, proc: subprocess.Popen[str], started: float, timeout: float) -> RunOutcome:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        release(proc)
        raise RunError(f"exp run in {request.run_dir} did not finish within {timeout:.0f} s") from None
    release(proc)
    summary = None
    if out.strip():
        try:
            summary = json.loads(out.strip().splitlines()[-1])
        except json.JSONDecodeError:
            summary = None
    return RunOutcome(request, proc.returncode, summary, err, time.perf_counter() - started)


@dataclass(frozen=True)
class StartedRun:
    request: RunRequest
    proc: subprocess.Popen[str]
    started: float


def start_exp(request: RunRequest) -> StartedRun:
    """Start a run without waiting for it (runs of one audit may overlap)."""
    proc = spawn(request.argv(), {**os.environ, **request.env})
    return StartedRun(request, proc, time.perf_counter())


def stop_exp(run: StartedRun) -> None:
    """End a started run nobody will wait for (a check that gave up): SIGKILL, reaped."""
    if run.proc.poll() is None:
        run.proc.kill()
    run.proc.communicate()
    release(run.proc)


def wait_exp(run: StartedRun, timeout: float = 3600) -> RunOutcome:
    """Wait for a started run; raise `RunError` unless it ended as asked."""
    request = run.request
    outcome = _finish(request, run.proc, run.started, timeout)
    if outcome.returncode != ExitCode.OK or outcome.summary is None:
        reason = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else f"exit {outcome.returncode}"
        raise RunError(f"exp run {request.spec} (run dir {request.run_dir}) failed: {reason}")
    return outcome


def run_exp(request: RunRequest, timeout: float = 3600) -> RunOutcome:
    return wait_exp(start_exp(request), timeout)


_COMMIT_MARKER = "commit_success.txt"
"""Orbax writes it last into a step folder (runtime/engine/checkpoint.py; not imported: it needs Orbax)."""

_POLL_S = 0.002
"""The next checkpoint can commit one save (~0.1 s for a small model) after the awaited one."""


def committed_checkpoints(directory: Path) -> list[int]:
    """Steps whose checkpoint Orbax has committed in `directory`, oldest first
    (what a resuming run can restore: unfinished writes have no marker)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and (directory / n / _COMMIT_MARKER).exists())


class _LedgerTail:
    """The highest step one attempt has recorded, read incrementally from where it began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.step = -1
        self.partial = b""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        # Earlier attempts' records do not count; a torn last line is cut by the new attempt.
        self.offset = data.rfind(b"\n") + 1

    def advance(self) -> int:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return self.step
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            try:
                record = parse_record(line, self.path)
            except DamagedRecord:
                continue
            if record.get("kind") == Kind.STEP and isinstance(record.get("step"), int):
                self.step = max(self.step, record["step"])
        return self.step


@dataclass(frozen=True)
class KilledRun:
    outcome: RunOutcome
    last_step: int
    """The highest step the killed attempt recorded in the ledger."""
    committed: list[int]
    """Checkpoints committed in the run's checkpoint folder when it died."""


def run_exp_killed(
    request: RunRequest, kill_at: int, checkpoints: Path, *, after: int = 0, timeout: float = 3600
) -> KilledRun:
    """Start a run and SIGKILL it mid-training, once its ledger has reached `kill_at`
    and a checkpoint at a step in (`after`, `kill_at`] has committed in `checkpoints`.

    The committed checkpoint is read from the folder, not from the ledger: the ledger
    holds a checkpoint's record back while a later save is in flight, which for a
    fast model is until the run ends. Raises `KillMissed` when the run ended first or
    had committed a checkpoint past `kill_at` by the time it died (it would resume
    there, past the cut), and `RunError` when it failed or did not get there in time.
    """
    tail = _LedgerTail(RunFiles(request.run_dir).ledger)
    run = start_exp(request)
    proc, deadline = run.proc, run.started + timeout

    def ready() -> bool:
        return tail.advance() >= kill_at and any(after < c <= kill_at for c in committed_checkpoints(checkpoints))

    while not ready():
        if proc.poll() is not None:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            _finish(request, proc, run.started, timeout)
            raise RunError(
                f"exp run {request.spec} (run dir {request.run_dir}) did not reach step {kill_at} "
                f"with a checkpoint committed within {timeout:.0f} s"
            )
        time.sleep(_POLL_S)
    proc.send_signal(signal.SIGKILL)
    outcome = _finish(request, proc, run.started, timeout)
    killed = KilledRun(outcome, tail.advance(), committed_checkpoints(checkpoints))
    wanted = f"step {kill_at} with a checkpoint committed at a step in {after + 1}..{kill_at}"
    seen = f"its ledger reached step {killed.last_step}, checkpoints committed: {killed.committed or 'none'}"
    if outcome.returncode != -signal.SIGKILL:
        if outcome.returncode != ExitCode.OK:
            reason = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else ""
            raise RunError(f"exp run {request.spec} (run dir {request.run_dir}) failed: {reason or outcome.returncode}")
        raise KillMissed(f"exp run {request.spec} ended before it could be killed at {wanted}: {seen}")
    if any(c > kill_at for c in killed.committed):
        raise KillMissed(f"exp run {request.spec} was killed too late to resume from {wanted}: {seen}")
    return killed
