"""Running a sweep: every point is a fresh `exp run` process, one after another.

A fresh process per point, because JAX settings (determinism flags, the CPU
thread pool) are fixed once JAX has started and two points may differ in them;
and because a point then runs exactly as `exp run` runs it, resumes included:
running the same sweep again finds every finished point complete and continues
the one that was cut. No JAX here; the sweep process only starts and watches.

Policy: a point that fails (exit 2 or 3) is reported and the sweep goes on, since
one diverging learning rate says nothing about the others; the sweep exits with
the first failure's code. A preempted point (exit PREEMPTED), or a SIGTERM or SIGINT to
the sweep, stops it at once with exit PREEMPTED: the cut point has saved a checkpoint,
and the same command resumes there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expspec.compiler.sweep import SweepPoint
from expspec.exit_codes import ExitCode
from expspec.runtime.processes.child_command import exp_run_argv
from expspec.runtime.processes.supervision import Member, signals_caught, supervise
from expspec.runtime.runs.records import iter_jsonl
from expspec.runtime.runs.rundir import RunDir, RunRefused
from expspec.runtime.runs.tensorboard import TensorBoardMissing, require_tensorboard
from expspec.runtime.runs.trackers import TrackerMissing, require_trackers

__all__ = ["PointResult", "SweepOptions", "SweepResult", "check_sweep", "point_argv", "run_sweep"]


@dataclass(frozen=True)
class SweepOptions:
    spec: Path
    parent: Path
    """The folder holding one run directory per point."""
    overrides: tuple[str, ...] = ()
    """Overrides every point shares (given before the points' own)."""
    stop_at: int | None = None
    allow_imports: tuple[str, ...] = ()
    quiet: bool = False


@dataclass(frozen=True)
class PointResult:
    point: SweepPoint
    run_dir: Path
    exit_code: int
    summary: dict[str, Any] | None
    """What `exp run --json` printed (None when it printed nothing)."""
    detail: str = ""
    """Why it failed, as its `events.jsonl` recorded it (empty for a refusal, which records nothing)."""
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        """finished, stopped, complete, preempted, interrupted or failed."""
        if self.exit_code == ExitCode.OK and self.summary is not None:
            return str(self.summary.get("outcome", "finished"))
        return {ExitCode.PREEMPTED: "preempted", ExitCode.INTERRUPTED: "interrupted"}.get(self.exit_code, "failed")

    @property
    def eval_metrics(self) -> dict[str, float] | None:
        """The final eval metrics: this attempt's, or for a point already complete, the last recorded."""
        if self.summary and self.summary.get("eval"):
            return dict(self.summary["eval"])
        last = None
        for record in iter_jsonl(RunDir(self.run_dir).metrics):
            if record.get("split") == "eval":
                last = record
        if last is None:
            return None
        return {k: v for k, v in last.items() if k not in ("split", "step", "time")}

    def to_dict(self, labels: Sequence[str]) -> dict[str, Any]:
        return {
            "point": dict(zip(labels, self.point.values)),
            "overrides": list(self.point.overrides),
            "run_dir": str(self.run_dir),
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "step": (self.summary or {}).get("step"),
            "total_steps": self.point.plan.spec.train.steps,
            "eval": self.eval_metrics,
            "trajectory": self.point.plan.fingerprints.trajectory,
            "detail": self.detail or None,
        }


@dataclass
class SweepResult:
    points: list[PointResult] = field(default_factory=list)
    stopped_by: str | None = None
    """preempted or interrupted: why points were left unrun."""

    @property
    def exit_code(self) -> int:
        """INTERRUPTED after a second SIGINT, PREEMPTED when stopped (rerun to resume),
        else the first failure's code, else OK."""
        if self.stopped_by == "interrupted":
            return ExitCode.INTERRUPTED
        if self.stopped_by is not None:
            return ExitCode.PREEMPTED
        return next((p.exit_code for p in self.points if p.outcome == "failed"), ExitCode.OK)


def check_sweep(points: Sequence[SweepPoint], options: SweepOptions) -> list[str]:
    """Why the sweep cannot start (one line each; empty when it can), decided before
    anything is written: a point's directory holding another trajectory, or TensorBoard
    asked for without tensorboardX."""
    problems = []
    for point in points:
        try:
            RunDir(options.parent / point.name).check_continuable(point.plan)
        except RunRefused as err:
            problems.append(str(err))
    if any(point.plan.spec.logging.tensorboard for point in points):
        try:
            require_tensorboard()
        except TensorBoardMissing as err:
            problems.append(f"{options.spec}: {err}")
    try:
        for point in points:
            require_trackers(point.plan.spec.logging)
    except TrackerMissing as err:
        problems.append(f"{options.spec}: {err}")
    return problems


def point_argv(options: SweepOptions, point: SweepPoint) -> list[str]:
    """The `exp run` command of one point."""
    return exp_run_argv(
        options.spec,
        [*options.overrides, *point.overrides],
        options.parent / point.name,
        stop_at=options.stop_at,
        allow_imports=options.allow_imports,
        json=True,
        quiet=options.quiet,
    )


def _failure(run_dir: Path) -> str:
    """Why a point failed, as its run recorded it (its own one-line message went to the terminal)."""
    errors = [e for e in iter_jsonl(RunDir(run_dir).events) if e.get("event") == "error"]
    return (str(errors[-1].get("error", "")).splitlines() or [""])[0][:300] if errors else ""


def _run_point(options: SweepOptions, point: SweepPoint) -> tuple[PointResult, str | None]:
    lines: list[str] = []
    started = time.perf_counter()
    # Its stderr is ours: on a terminal the point shows the progress bar `exp run` shows.
    member = Member(point_argv(options, point), os.environ, inherit_stderr=True, signals_blocked=True)
    outcome = supervise([member], echo=lambda _stream, line: lines.append(line))  # stdout: the --json summary
    summary = None
    for line in reversed(lines):
        try:
            summary = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    run_dir = options.parent / point.name
    detail = _failure(run_dir) if outcome.failures else ""
    seconds = time.perf_counter() - started
    return PointResult(point, run_dir, outcome.exit_code, summary, detail, seconds), outcome.signal


def run_sweep(
    points: Sequence[SweepPoint],
    options: SweepOptions,
    *,
    started: Callable[[int, SweepPoint], None] | None = None,
    finished: Callable[[int, PointResult], None] | None = None,
) -> SweepResult:
    """Run `points` in order (see the module's policy); `started` and `finished` are told of each point."""
    result = SweepResult()
    # A SIGTERM or SIGINT between two points stops the sweep before the next
    # (during a point, `supervise` catches it and passes it on).
    with signals_caught() as caught:
        for index, point in enumerate(points):
            if caught.signal is not None:
                result.stopped_by = "preempted"
                break
            if started is not None:
                started(index, point)
            done, signal = _run_point(options, point)
            result.points.append(done)
            if finished is not None:
                finished(index, done)
            if done.outcome in ("preempted", "interrupted"):
                result.stopped_by = done.outcome
                break
            if signal is not None:
                result.stopped_by = "preempted"
                break
    return result
