"""One process's turn at a run directory: lock, resume, train, record, release."""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

from exp.compiler import Plan

from .build import Components, build_components, saved_part
from .checkpoint import Checkpointer
from .cluster import Cluster
from .environment import environment_class
from .hashing import full_hash
from .launch import RunFailed, RunOptions, RunResult
from .loop import Recorders, train_loop
from .lora_base import BaseWeights
from .progress import ProgressReport
from .records import Discard, JsonLines, RunLock, read_jsonl
from .resume import ResumePoint, check_identity, find_resume_point
from .rundir import RunDir, RunRefused, operational_changes, write_json_atomic
from .signals import PreemptionGuard
from .tensorboard import FOLDER, TensorBoardMetrics
from .throttle import choose_inflight

__all__ = ["Session"]


def _compilations(comps: Components) -> int:
    """Train-step compilations in this process; the unhashed variant counts when `ledger_every` used it."""
    return comps.steps.train._cache_size() + comps.steps.train_unhashed._cache_size()


class Session:
    """Holds the run directory for one process (a context manager)."""

    def __init__(
        self,
        plan: Plan,
        rundir: RunDir,
        options: RunOptions,
        previous: Plan | None,
        guard: PreemptionGuard,
        cluster: Cluster,
        base: BaseWeights | None = None,
    ) -> None:
        self.plan, self.rundir, self.options, self.previous, self.guard = plan, rundir, options, previous, guard
        self.cluster = cluster
        self.base = base
        """LoRA base weights, pinned and verified before the run directory was touched."""
        self.lock = RunLock(rundir.root / cluster.own(rundir.lock.name))
        self.recorders: Recorders | None = None
        self.checkpointer: Checkpointer | None = None
        self.background: list[str] = []
        """What background threads and library loggers reported (kept for the error event)."""

    def __enter__(self) -> Session:
        from .records import RunLocked

        try:
            self.lock.acquire()
        except RunLocked as err:
            raise RunRefused(str(err)) from None
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # After a failure, closing Orbax's manager would wake writer threads whose
        # event loop is gone (each prints a traceback); the failure is already
        # recorded and the process is about to end.
        if self.checkpointer is not None and exc_type is None:
            self.checkpointer.close()
        if self.recorders is not None:
            for recorder in (self.recorders.ledger, self.recorders.metrics, self.recorders.events):
                recorder.close()
        self.lock.release()

    # -- helpers ---------------------------------------------------------
    def event(self, name: str, **fields: Any) -> None:
        assert self.recorders is not None
        self.recorders.events.write({"event": name, "time": time.time(), **fields})

    def _record_setup(self, env: dict[str, Any]) -> list[str]:
        """plan.json and env.json (the primary process writes them); the differences from the recorded ones."""
        notes: list[str] = []
        if not self.cluster.primary:
            return notes
        changes = operational_changes(self.previous, self.plan) if self.previous else {}
        if self.previous is None or changes or self.previous.source != self.plan.source:
            write_json_atomic(self.rundir.plan, self.plan.to_dict())
        if changes:
            self.event("operational_change", changes=changes)
            notes.append(f"operational changes: {', '.join(changes)}")
        if self.rundir.env.exists():
            before = json.loads(self.rundir.env.read_text())
            if before.get("class_id") != env["class_id"]:
                self.event("environment_change", before=before.get("class"), after=env["class"])
                notes.append("the environment class changed: bitwise equality with earlier steps is not promised")
        write_json_atomic(self.rundir.env, env)
        return notes

    def _begin(
        self, comps: Components, point: ResumePoint | None, attempt: int, progress: ProgressReport
    ) -> tuple[Any, int]:
        """The state to train from and its step: restored, or fresh."""
        if point is None:
            self.event(
                "start",
                step=0,
                attempt=attempt,
                trajectory=self.plan.fingerprints.trajectory,
                data=comps.data.fingerprint,
                base_weights=comps.base_weights,
                base_checkpoint=comps.base_checkpoint,
            )
            return comps.state, 0
        self.event("resume", step=point.step, attempt=attempt, full_hash=point.meta["full_hash"])
        progress.note(f"resumed {self.rundir.root} at step {point.step}/{self.plan.spec.train.steps}")
        return point.state, point.step

    def _set_aside(self, point: ResumePoint | None) -> None:
        """Record and move away what failed verification or never finished."""
        assert self.checkpointer is not None
        for note in self.checkpointer.tidied:
            self.event("checkpoint_cleanup", note=note)
        for step, reason in sorted((point.rejected if point else {}).items()):
            moved = self.checkpointer.set_aside(step, "rejected")
            self.event("checkpoint_rejected", step=step, reason=reason, moved_to=str(moved))

    def _max_inflight(self, comps: Components, state: Any, start: int, progress: ProgressReport) -> int:
        """The plan's bound, or (for "auto") one chosen from the compiled step, recorded."""
        throttle = self.plan.throttle
        if throttle.max_inflight != "auto":
            return throttle.max_inflight
        # The batch the loop starts with: the step analysed is the one the loop runs.
        batch = comps.place_batch(comps.data.train_batch(start))
        device = comps.layout.mesh.local_devices[0]
        choice = choose_inflight(comps.steps.train, state, batch, throttle.memory_budget, device)
        self.event("throttle", step=start, **choice.record())
        progress.note(choice.reason)
        return choice.max_inflight

    # -- the run ---------------------------------------------------------
    def run(self) -> RunResult:
        plan, options, rundir = self.plan, self.options, self.rundir
        total = plan.spec.train.steps
        # Counted before any process of a cluster can record this attempt's start.
        attempt = sum(1 for e in read_jsonl(rundir.events) if e.get("event") in ("start", "resume"))
        comps = build_components(plan, options.spec_dir, options.allow_imports, self.cluster, self.base)
        if plan.checkpoint.enabled:
            self.checkpointer = Checkpointer(
                rundir.checkpoints(plan, options.spec_dir),
                plan.checkpoint,
                total,
                rundir.root / "rejected",
                self.cluster,
            )
            check_identity(self.checkpointer, plan, comps, str(rundir.root))  # may refuse: nothing written yet
        shared = self.cluster.primary
        self.recorders = Recorders(
            ledger=JsonLines(rundir.root / self.cluster.own(rundir.ledger.name)),
            metrics=JsonLines(rundir.metrics) if shared else Discard(),
            events=JsonLines(rundir.events) if shared else Discard(),
        )
        try:
            point = find_resume_point(self.checkpointer, comps) if self.checkpointer else None
        except RunFailed as err:
            self.event("error", error=str(err))
            raise
        if point is not None and point.step >= total and self.previous is not None and not point.rejected:
            compiled = _compilations(comps)
            return RunResult("complete", rundir.root, point.step, total, point.meta["full_hash"], None, compiled)
        if shared and plan.spec.logging.tensorboard:
            folder = rundir.root / FOLDER
            start = point.step if point else 0
            # A folder already there holds an earlier attempt's view: hide its steps after `start`.
            purge = start + 1 if folder.exists() else None
            self.recorders.metrics = TensorBoardMetrics(self.recorders.metrics, folder, purge)
        if self.lock.previous and self.lock.previous.get("pid"):
            self.event("lock_takeover", previous=self.lock.previous)
        notes = self._record_setup(environment_class(dict(comps.layout.sizes), plan.distributions))
        if self.checkpointer is not None:
            self._set_aside(point)

        progress = ProgressReport(total, point.step if point else 0, options.progress, plan.spec.train.log_every)
        for note in notes:
            progress.note(note)
        try:
            state, start = self._begin(comps, point, attempt, progress)
            self.event("layout", step=start, **comps.layout.record(state))
            max_inflight = self._max_inflight(comps, state, start, progress)
            result = train_loop(
                plan,
                comps,
                state,
                start,
                recorders=self.recorders,
                checkpointer=self.checkpointer,
                progress=progress,
                guard=self.guard,
                stop_at=options.stop_at,
                attempt=attempt,
                max_inflight=max_inflight,
            )
            digest = full_hash(comps.layout.to_host(saved_part(result.state, plan.checkpoint.save)))
        except Exception as err:
            self.event(
                "error",
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
                background=self.background[-20:],
            )
            raise
        finally:
            progress.close()
        self.event(result.status, step=result.step, full_hash=digest, signal=result.signal, eval=result.eval_metrics)
        return RunResult(
            result.status,
            rundir.root,
            result.step,
            total,
            digest,
            result.eval_metrics,
            _compilations(comps),
            result.signal,
        )
