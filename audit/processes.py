"""Starting `exp run` in fresh processes: the audit uses only the public entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunError", "RunOutcome", "RunRequest", "StartedRun", "run_exp", "run_exp_killed", "start_exp", "wait_exp"]

# -P: never let a folder named `exp` in the working directory shadow the installed package.
_EXP = [sys.executable, "-P", "-m", "exp", "run"]


class RunError(RuntimeError):
    """A run the audit needed could not be carried out (bad spec, crash, refusal)."""


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
        args = [*_EXP, self.spec, *self.overrides, "--run-dir", str(self.run_dir), "--json", "--quiet"]
        if self.stop_at is not None:
            args += ["--stop-at", str(self.stop_at)]
        for prefix in self.allow_imports:
            args += ["--allow-import", prefix]
        return args


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
        out, err = proc.communicate()
        raise RunError(f"exp run in {request.run_dir} did not finish within {timeout:.0f} s") from None
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
    proc = subprocess.Popen(
        request.argv(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **request.env},
    )
    return StartedRun(request, proc, time.perf_counter())


def wait_exp(run: StartedRun, timeout: float = 3600) -> RunOutcome:
    """Wait for a started run; raise `RunError` unless it ended as asked."""
    request = run.request
    outcome = _finish(request, run.proc, run.started, timeout)
    if outcome.returncode != 0 or outcome.summary is None:
        reason = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else f"exit {outcome.returncode}"
        raise RunError(f"exp run {request.spec} (run dir {request.run_dir}) failed: {reason}")
    return outcome


def run_exp(request: RunRequest, timeout: float = 3600) -> RunOutcome:
    return wait_exp(start_exp(request), timeout)


def _ledger_step(run_dir: Path) -> int:
    path = run_dir / "ledger.jsonl"
    if not path.exists():
        return -1
    last = -1
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n") and '"kind":"step"' in line:
            last = max(last, json.loads(line)["step"])
    return last


def run_exp_killed(request: RunRequest, kill_at: int, timeout: float = 3600) -> RunOutcome:
    """Start a run and SIGKILL it once its ledger reaches `kill_at`."""
    run = start_exp(request)
    proc, t0 = run.proc, run.started
    deadline = t0 + timeout
    while _ledger_step(request.run_dir) < kill_at:
        if proc.poll() is not None:
            out = _finish(request, proc, t0, timeout)
            raise RunError(f"exp run {request.spec} ended (exit {out.returncode}) before step {kill_at}")
        if time.perf_counter() > deadline:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    return _finish(request, proc, t0, timeout)
