"""`execute`: run a plan in a run directory, resuming it when it is the same experiment.

This module imports no JAX at load time: the plan's determinism settings must
be in the environment before JAX starts, and a refused run directory must be
refused before anything is touched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from expspec.compiler import Plan
from expspec.errors import BadInput, RunFailure
from expspec.runtime.engine.environment import apply_determinism
from expspec.runtime.processes.signals import PreemptionGuard
from expspec.runtime.runs.rundir import RunDir, RunRefused
from expspec.runtime.runs.tensorboard import require_tensorboard
from expspec.runtime.runs.trackers import require_trackers

__all__ = ["RunFailed", "RunOptions", "RunResult", "RunRefused", "enable_compilation_cache", "execute", "first_missing"]

Outcome = Literal["finished", "stopped", "preempted", "complete"]


class RunFailed(RunFailure, RuntimeError):
    """The run could not go on (a bad checkpoint, a disk error, a crash in a component)."""


@dataclass(frozen=True)
class RunOptions:
    spec_dir: Path
    """Folder that relative paths in the spec resolve against."""
    stop_at: int | None = None
    allow_imports: Sequence[str] = ()
    progress: Literal["auto", "bar", "lines", "quiet"] = "auto"
    compilation_cache: Path | None = field(default=None)
    """Persistent XLA compilation cache; None uses `$EXP_CACHE_DIR` or `~/.cache/expspec/xla`."""
    rehash_data: bool = False
    """Read every data file again for its fingerprint instead of trusting the cache by file identity."""


@dataclass
class RunResult:
    outcome: Outcome
    run_dir: Path
    step: int
    total_steps: int
    full_hash: str | None
    eval_metrics: dict[str, float] | None
    compilations: int
    signal: str | None = None
    checkpoint: int | None = None
    """The newest committed checkpoint when the attempt ended (None: none): what a preemption kept."""
    began: int | None = None
    """The step this attempt trained from (None: it stopped before it knew, having trained nothing)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "run_dir": str(self.run_dir),
            "step": self.step,
            "total_steps": self.total_steps,
            "full_hash": self.full_hash,
            "eval": self.eval_metrics,
            "compilations": self.compilations,
            "signal": self.signal,
            "checkpoint": self.checkpoint,
            "began": self.began,
        }

    def preemption(self) -> str:
        """What a preempted attempt did and kept, in words: "checkpoint saved" only
        when a checkpoint of the step it stopped at committed."""
        last = f"the last checkpoint is step {self.checkpoint}" if self.checkpoint is not None else "no checkpoint yet"
        if self.began is None:
            return f"preempted by {self.signal} before training started: nothing new to save; {last}"
        if self.step == self.began:
            return f"preempted by {self.signal} before step {self.step + 1}: nothing new to save; {last}"
        if self.checkpoint == self.step:
            return f"preempted by {self.signal} at step {self.step}: checkpoint saved"
        return f"preempted by {self.signal} at step {self.step}: not saved; {last}"


def enable_compilation_cache(path: Path | None) -> None:
    import jax

    # JAX creates the folder at its first compile, so a run refused for its input
    # (before anything compiles) leaves no cache folder behind either.
    cache = path or Path(os.environ.get("EXP_CACHE_DIR") or Path.home() / ".cache" / "expspec" / "xla")
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what mkdir -p creates)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def execute(plan: Plan, run_dir: Path, options: RunOptions) -> RunResult:
    """Train `plan` in `run_dir` (new, or an earlier run of the same trajectory).

    Raises `RunRefused` (exit 2) for a directory of another experiment or one
    in use, `RunFailed` (exit 3) when training cannot go on.
    """
    # Preemption is honoured from the first moment: a signal while `exp` starts
    # (recorded by its start-up handler, adopted by the guard), while JAX starts or
    # a checkpoint restores still ends as preempted (`ExitCode.PREEMPTED`), not in a killed process.
    with PreemptionGuard() as guard, ExitStack() as held:
        rundir = RunDir(run_dir)
        previous = rundir.check_continuable(plan)  # before anything is written
        if plan.spec.logging.tensorboard:
            require_tensorboard()  # refused (exit 2) before the run directory exists
        require_trackers(plan.spec.logging)
        from expspec.runtime.processes.cluster import agree_any, join_cluster, requested_cluster
        from expspec.runtime.processes.quiet import NativeStderrToFile, NativeStdoutToFile, background_errors_captured

        # A process that will be a cluster member must join first: its peers wait for it.
        if guard.requested and requested_cluster() is None:
            return _preempted_before_training(plan, rundir, options, guard.requested)
        apply_determinism(plan.determinism)
        enable_compilation_cache(options.compilation_cache)
        cluster = join_cluster()  # before any computation: JAX's devices are the cluster's from here on
        guard.reclaim()
        if cluster.joined:
            # Gloo prints a note on fd 1, where --json goes, for each connection it makes,
            # and not always before the collective returns: none reaches the terminal
            # (the session's own log takes those of its collectives).
            held.enter_context(NativeStdoutToFile(Path(os.devnull)))
        if agree_any(cluster, guard.requested is not None):  # all members stop here, or none
            return _preempted_before_training(plan, rundir, options, guard.requested or _ANOTHER)

        from expspec.runtime.engine.lora_base import pin_base
        from expspec.runtime.engine.session import Session  # imports JAX, after the settings are in place

        base = pin_base(plan, rundir, options.spec_dir)  # may refuse: nothing is written yet
        created = first_missing(rundir.root.absolute()) if cluster.primary else None
        rundir.root.mkdir(parents=True, exist_ok=True)
        log = rundir.root / cluster.own(rundir.stderr_log.name)
        try:
            with (
                NativeStdoutToFile(log) if cluster.joined else nullcontext(),
                NativeStderrToFile(log),
                Session(plan, rundir, options, previous, guard, cluster, base) as session,
                background_errors_captured(session.background),
            ):
                result = session.run()
        except BadInput as err:
            # Bad input leaves nothing behind; a refused (locked) directory is another run's.
            if created is not None and not isinstance(err, RunRefused):
                shutil.rmtree(created, ignore_errors=True)
            raise
        # After the session closed: every write has ended, committed or not.
        result.checkpoint = _newest_checkpoint(plan, rundir, options)
        return result


_ANOTHER = "SIGTERM (to another process)"
_COMMIT_MARKER = "commit_success.txt"
"""Orbax's mark of a committed step folder (checkpoint.COMMIT_MARKER; that module imports Orbax)."""


def _newest_checkpoint(plan: Plan, rundir: RunDir, options: RunOptions) -> int | None:
    """The newest step whose checkpoint committed in the run's folder (a listing: no Orbax)."""
    if not plan.checkpoint.enabled:
        return None
    folder = rundir.checkpoints(plan, options.spec_dir)
    found = folder.glob(f"*/{_COMMIT_MARKER}") if folder.is_dir() else ()
    return max((int(p.parent.name) for p in found if p.parent.name.isdigit()), default=None)


def _preempted_before_training(plan: Plan, rundir: RunDir, options: RunOptions, signal: str) -> RunResult:
    """The result of a run stopped before it trained or wrote anything: it stands at
    its newest checkpoint (the one the next attempt resumes from), or at step 0."""
    newest = _newest_checkpoint(plan, rundir, options)
    step = newest or 0
    return RunResult("preempted", rundir.root, step, plan.spec.train.steps, None, None, 0, signal, newest, None)
