"""A `jax.profiler` trace of a window of training steps (`[logging] profile`).

The loop tells the window two things per step: that the step is about to be
dispatched, and that its outputs have reached the host. The trace starts just
before step `start` is dispatched and stops once step `start + steps - 1` is
retired, so every one of the window's steps is inside it, from dispatch to
device to host. The loop dispatches ahead (up to `throttle.max_inflight`
steps), so the first steps after the window may be partly inside too; they are
not marked as steps. Each traced step is marked with a `StepTraceAnnotation`
from its dispatch to the next one, which is what TensorBoard's profile plugin
counts as a step.

An attempt that resumes inside the window traces from its first step; one that
resumes after it traces nothing. Only process 0 of a cluster traces. The trace
is what `jax.profiler.stop_trace` exports into `<run_dir>/profile/`:
`plugins/profile/<time>/<host>.xplane.pb` (TensorBoard, XProf) and
`<host>.trace.json.gz`, plus `perfetto_trace.json.gz` for ui.perfetto.dev.
Exporting is synchronous: the step that ends the window waits for it.
Profiling changes no computation, so the field is operational.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import jax

from expspec.compiler import Plan
from expspec.errors import RunFailure
from expspec.runtime.runs.run_files import PROFILE

__all__ = ["ProfileError", "ProfileWindow"]

STEP_MARKER = "train"
"""Name of the per-step annotation in the trace."""

_State = Literal["waiting", "tracing", "done"]


class ProfileError(RunFailure, RuntimeError):
    """The profiler could not start or write its trace (e.g. another trace is already running)."""


class ProfileWindow:
    """Starts and stops one `jax.profiler` trace around steps `first` .. `last` (1-based)."""

    def __init__(self, folder: Path, start: int, steps: int) -> None:
        if start < 1 or steps < 1:
            raise ValueError(f"a profile window needs start >= 1 and steps >= 1 (got {start}, {steps})")
        self.folder = folder
        """Where the trace is written: the run directory's `profile/`."""
        self.first, self.last = start, start + steps - 1
        self.written: Path | None = None
        """The folder holding this window's trace files, once it is written."""
        self._state: _State = "waiting"
        self._marker: jax.profiler.StepTraceAnnotation | None = None
        self._before: set[Path] = set()

    @classmethod
    def from_plan(cls, plan: Plan, run_dir: Path, *, primary: bool) -> ProfileWindow | None:
        """The window the plan asks for; None when it asks for none or this is not process 0."""
        window = plan.spec.logging.profile
        if window is None or not primary:
            return None
        return cls(run_dir / PROFILE, window.start, window.steps)

    @property
    def tracing(self) -> bool:
        """Whether the trace is running now."""
        return self._state == "tracing"

    def before_dispatch(self, step: int) -> None:
        """Call just before step `step` is dispatched: starts the trace at the window's first step
        (or at the first step of an attempt resumed inside the window)."""
        if self._state == "waiting":
            if step > self.last:  # the attempt began after the window
                self._state = "done"
            elif step >= self.first:
                self._start()
        if self._state == "tracing" and step <= self.last:
            self._end_marker()
            self._marker = jax.profiler.StepTraceAnnotation(STEP_MARKER, step_num=step)
            self._marker.__enter__()

    def after_retired(self, step: int) -> None:
        """Call once step `step`'s outputs are on the host: stops the trace after the window's last step."""
        if self._state == "tracing" and step >= self.last:
            self._stop()

    def close(self) -> None:
        """Stop a trace still running (the attempt ended or stopped inside the window); idempotent."""
        if self._state == "tracing":
            self._stop()
        self._state = "done"

    def _start(self) -> None:
        self._before = set(self._traces())
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(self.folder, create_perfetto_trace=True)
        except (RuntimeError, OSError) as err:
            self._state = "done"
            raise ProfileError(f"logging.profile: could not start the profiler trace: {err}") from err
        self._state = "tracing"

    def _stop(self) -> None:
        self._end_marker()
        self._state = "done"  # never stopped twice, even when stopping fails
        try:
            jax.profiler.stop_trace()
        except (RuntimeError, OSError, ValueError) as err:
            raise ProfileError(f"logging.profile: could not write the profiler trace to {self.folder}: {err}") from err
        new = [path for path in self._traces() if path not in self._before]
        self.written = max(new, key=lambda path: path.stat().st_mtime_ns) if new else None

    def _end_marker(self) -> None:
        if self._marker is not None:
            self._marker.__exit__(None, None, None)
            self._marker = None

    def _traces(self) -> list[Path]:
        """The trace folders under `profile/` (one per trace `jax.profiler` exported)."""
        root = self.folder / "plugins" / "profile"
        return [path for path in root.iterdir() if path.is_dir()] if root.is_dir() else []
