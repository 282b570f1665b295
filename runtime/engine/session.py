"""One process's turn at a run directory: lock, resume, train, record, release."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from expspec import __version__
from expspec.compiler import Plan
from expspec.errors import BadInput
from expspec.runtime.data import close_source
from expspec.runtime.engine.build import Components, build_components, saved_part
from expspec.runtime.engine.checkpoint import Checkpointer
from expspec.runtime.engine.checkpoint_writer import WriterProcess, wants_process
from expspec.runtime.engine.environment import environment_class
from expspec.runtime.engine.hashing import full_hash
from expspec.runtime.engine.ledger_repair import recover_checkpoint_records
from expspec.runtime.engine.loop import LoopContext, LoopResult, Recorders, train_loop
from expspec.runtime.engine.lora_base import BaseWeights
from expspec.runtime.engine.profiler import ProfileWindow
from expspec.runtime.engine.progress import ProgressReport
from expspec.runtime.engine.resume import ResumePoint, check_identity, find_resume_point
from expspec.runtime.engine.step import StepCompilations
from expspec.runtime.engine.throttle import choose_inflight
from expspec.runtime.processes.cluster import Cluster
from expspec.runtime.processes.execute import RunFailed, RunOptions, RunResult
from expspec.runtime.processes.signals import PreemptionGuard
from expspec.runtime.runs.damaged_records import DAMAGED_EVENT, read_env, survey_records
from expspec.runtime.runs.records import Discard, JsonLines, RunLock, ignore_damage, read_jsonl
from expspec.runtime.runs.run_files import ENV, Event, attempts
from expspec.runtime.runs.rundir import (
    RecordedPlan,
    RunDir,
    RunRefused,
    operational_changes,
    upgrade_record,
    write_json_atomic,
)
from expspec.runtime.runs.tensorboard import TensorBoardMetrics
from expspec.runtime.runs.trackers import TrackerFeed

__all__ = ["Session"]


@dataclass
class _Attempt:
    """What this process's attempt has built and found, handed from one part of `Session.run` to the next."""

    number: int
    """Attempts recorded before this one (0 for the first)."""
    comps: Components
    compiled: StepCompilations
    point: ResumePoint | None = None
    """Where it resumes (None: from the start)."""

    @property
    def start(self) -> int:
        return self.point.step if self.point is not None else 0


class Session:
    """Holds the run directory for one process (a context manager)."""

    def __init__(
        self,
        plan: Plan,
        rundir: RunDir,
        options: RunOptions,
        previous: RecordedPlan | None,
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
        self.writer_process: WriterProcess | None = None
        self.background: list[str] = []
        """What background threads and library loggers reported (kept for the error event)."""

    def __enter__(self) -> Session:
        from expspec.runtime.runs.records import RunLocked

        try:
            self.lock.acquire()
        except RunLocked as err:
            raise RunRefused(str(err)) from None
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # After a failure, closing Orbax's manager would wake writer threads whose
        # event loop is gone (each prints a traceback); the failure is already
        # recorded and the process is about to end. A refusal (bad input) comes
        # before any save, and the manager must be closed then: the thread it
        # started when it opened would otherwise outlive the interpreter's shutdown.
        refused = isinstance(exc_type, type) and issubclass(exc_type, BadInput)
        if self.writer_process is not None:
            self.writer_process.close()
        if self.checkpointer is not None and (exc_type is None or refused):
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
        """plan.json and env.json (the primary process writes them), damaged records named;
        the differences from the recorded ones."""
        notes: list[str] = []
        if not self.cluster.primary:
            return notes
        damaged = survey_records(self.rundir)
        if damaged:
            self.event(DAMAGED_EVENT, files=damaged)
            listed = ", ".join(f"{name} ({d['count']})" for name, d in damaged.items())
            notes.append(f"skipped damaged lines in {listed}: they hold no record (listed in events.jsonl)")
        before, unreadable = read_env(self.rundir.env)
        notes += self._record_plan(before)
        if unreadable:
            self.event(Event.ENVIRONMENT_CHANGE, before=None, after=env["class"], unreadable=f"{ENV}: {unreadable}")
            notes.append(
                f"env.json {unreadable}: rewritten from this environment; "
                "whether the environment class changed is unknown"
            )
        elif before is not None and before.get("class_id") != env["class_id"]:
            self.event(Event.ENVIRONMENT_CHANGE, before=before.get("class"), after=env["class"])
            notes.append("the environment class changed: bitwise equality with earlier steps is not promised")
        write_json_atomic(self.rundir.env, {**env, "expspec": __version__})
        return notes

    def _record_plan(self, env_before: dict[str, Any] | None) -> list[str]:
        """plan.json written when new or changed; an upgrade keeps the old plan and says what changed."""
        previous = self.previous
        if previous is not None and previous.upgrade:
            kept = self.rundir.keep_plan(previous.text)
            old_version = (env_before or {}).get("expspec")
            record = upgrade_record(previous, self.plan, kept, (old_version, __version__))
            self.event(Event.UPGRADE, **record)
            write_json_atomic(self.rundir.plan, self.plan.to_dict())
            added = ", ".join([*record["added"], *record["parts"].get("added", [])]) or "none"
            return [f"upgraded this run directory's plan (new: {added}); the old plan is kept as {kept.name}"]
        loaded = previous.plan if previous is not None else None
        changes = operational_changes(loaded, self.plan) if loaded is not None else {}
        if loaded is None or changes or loaded.source != self.plan.source:
            write_json_atomic(self.rundir.plan, self.plan.to_dict())
        if changes:
            self.event(Event.OPERATIONAL_CHANGE, changes=changes)
            return [f"operational changes: {', '.join(changes)}"]
        return []

    def _begin(
        self, comps: Components, point: ResumePoint | None, attempt: int, progress: ProgressReport
    ) -> tuple[Any, int]:
        """The state to train from and its step: restored, or fresh."""
        if point is None:
            self.event(
                Event.START,
                step=0,
                attempt=attempt,
                trajectory=self.plan.fingerprints.trajectory,
                data=comps.data.fingerprint,
                base_weights=comps.base_weights,
                base_checkpoint=comps.base_checkpoint,
            )
            return comps.state, 0
        total = self.plan.spec.train.steps
        # Resuming at the last step: the steps are done, the end (final evaluation, records) is not.
        to_finish = {"to_finish": True} if point.step >= total else {}
        self.event(Event.RESUME, step=point.step, attempt=attempt, full_hash=point.meta["full_hash"], **to_finish)
        what = "to finish (final evaluation and records)" if to_finish else ""
        progress.note(f"resumed {self.rundir.root} at step {point.step}/{total} {what}".rstrip())
        return point.state, point.step

    def _finished_record(self, step: int) -> dict[str, Any] | None:
        """The run's `finished` record at `step`, if there is one.

        A run is complete when its end is recorded (the final evaluation and the
        final hash), not when its steps are done: a kill between the last
        checkpoint and that record leaves the end to the next attempt.
        """
        found = None
        for event in read_jsonl(self.rundir.events, ignore_damage):
            if event.get("event") == Event.FINISHED and event.get("step") == step:
                found = event
        return found

    def _set_aside(self, point: ResumePoint | None) -> None:
        """Record and move away what failed verification or never finished."""
        assert self.checkpointer is not None
        for note in self.checkpointer.tidied:
            self.event(Event.CHECKPOINT_CLEANUP, note=note)
        for step, reason in sorted((point.rejected if point else {}).items()):
            moved = self.checkpointer.set_aside(step, "rejected")  # every process, same order: agreed verdicts
            who = {"processes": point.rejected_by[step]} if point and self.cluster.multi else {}
            self.event(Event.CHECKPOINT_REJECTED, step=step, reason=reason, moved_to=str(moved), **who)

    def _max_inflight(self, comps: Components, state: Any, start: int, progress: ProgressReport) -> int:
        """The plan's bound, or (for "auto") one chosen from the compiled step, recorded."""
        throttle = self.plan.throttle
        if throttle.max_inflight != "auto":
            return throttle.max_inflight
        # The batch the loop starts with: the step analysed is the one the loop runs.
        batch = comps.place_batch(comps.data.train_batch(start))
        device = comps.layout.mesh.local_devices[0]
        choice = choose_inflight(comps.steps.train, state, batch, throttle.memory_budget, device)
        self.event(Event.THROTTLE, step=start, **choice.record())
        progress.note(choice.reason)
        return choice.max_inflight

    # -- the run ---------------------------------------------------------
    def run(self) -> RunResult:
        """One attempt: find where to resume, then either report the run complete or train and record."""
        if wants_process(self.plan.checkpoint, self.cluster, self.plan.spec.train.steps):
            # Started first: it imports JAX and Orbax while this process builds and compiles.
            self.writer_process = WriterProcess()
        with StepCompilations() as compiled:
            # Counted before any process of a cluster can record this attempt's start.
            number = attempts(read_jsonl(self.rundir.events, ignore_damage))
            comps = build_components(
                self.plan,
                self.options.spec_dir,
                self.options.allow_imports,
                self.cluster,
                self.base,
                rehash_data=self.options.rehash_data,
            )
            try:
                attempt = _Attempt(number, comps, compiled)
                self._open_checkpoints(attempt)  # may refuse: nothing written yet
                self._open_records()
                attempt.point = self._resume_point(attempt)
                done = self._already_complete(attempt)
                if done is not None:
                    return done
                notes = self._prepare(attempt)
                return self._train(attempt, notes)
            finally:
                close_source(comps.data)

    def _open_checkpoints(self, attempt: _Attempt) -> None:
        """The checkpointer, when the plan saves; refuse checkpoints of another trajectory, data or base."""
        plan, rundir = self.plan, self.rundir
        if not plan.checkpoint.enabled:
            return
        self.checkpointer = Checkpointer(
            rundir.checkpoints(plan, self.options.spec_dir),
            plan.checkpoint,
            plan.spec.train.steps,
            rundir.rejected,
            self.cluster,
        )
        equivalent = self.previous.equivalent if self.previous else frozenset()
        check_identity(self.checkpointer, plan, attempt.comps, str(rundir.root), equivalent)

    def _open_records(self) -> None:
        """The append-only files: each process its own ledger; metrics and events from the primary."""
        rundir, shared = self.rundir, self.cluster.primary
        self.recorders = Recorders(
            ledger=JsonLines(rundir.root / self.cluster.own(rundir.ledger.name)),
            metrics=JsonLines(rundir.metrics) if shared else Discard(),
            events=JsonLines(rundir.events) if shared else Discard(),
        )

    def _resume_point(self, attempt: _Attempt) -> ResumePoint | None:
        """The newest verified checkpoint (None for a fresh run); a run with none intact is recorded and refused."""
        if self.checkpointer is None:
            return None
        try:
            return find_resume_point(self.checkpointer, attempt.comps)
        except RunFailed as err:
            self.event(Event.ERROR, error=str(err))
            raise

    def _already_complete(self, attempt: _Attempt) -> RunResult | None:
        """The run's result when an earlier attempt recorded its end at the resume point; nothing is written."""
        point, total = attempt.point, self.plan.spec.train.steps
        if point is None or point.step < total or point.rejected:
            return None
        finished = self._finished_record(point.step)
        if finished is None:
            return None
        recorded = finished.get("eval")
        metrics = recorded if isinstance(recorded, dict) else None
        full = point.meta["full_hash"]
        return RunResult("complete", self.rundir.root, point.step, total, full, metrics, attempt.compiled.count)

    def _prepare(self, attempt: _Attempt) -> list[str]:
        """Everything recorded before training: the metrics' TensorBoard view, a lock takeover, plan and
        environment, checkpoints set aside and records recovered; the notes for the progress report."""
        assert self.recorders is not None
        plan, rundir = self.plan, self.rundir
        if self.cluster.primary and plan.spec.logging.tensorboard:
            folder = rundir.tensorboard
            # A folder already there holds an earlier attempt's view: hide its steps after `start`.
            purge = attempt.start + 1 if folder.exists() else None
            self.recorders.metrics = TensorBoardMetrics(self.recorders.metrics, folder, purge)
        if self.lock.previous and self.lock.previous.get("pid"):
            self.event(Event.LOCK_TAKEOVER, previous=self.lock.previous)
        env = environment_class(dict(attempt.comps.layout.sizes), plan.distributions)
        notes = self._record_setup(env)
        if self.cluster.primary:  # W&B and MLflow: fed from the records, on their own thread
            events = self.recorders.events
            feed = TrackerFeed.start(plan, rundir, env, self.options.spec_dir, attempt.start, events)
            if feed is not None:
                self.recorders.metrics = feed.tracked(self.recorders.metrics, "metrics")
                self.recorders.events = feed.tracked(events, "events")
        if self.checkpointer is not None:
            self._set_aside(attempt.point)
            recovered = recover_checkpoint_records(self.checkpointer, self.recorders.ledger, attempt.number)
            if recovered:
                self.event(Event.CHECKPOINT_RECORDS_RECOVERED, steps=recovered)
        return notes

    def _train(self, attempt: _Attempt, notes: list[str]) -> RunResult:
        """Train from the resume point; a failure is recorded (with what background threads said) and raised."""
        assert self.recorders is not None
        plan, comps, train = self.plan, attempt.comps, self.plan.spec.train
        progress = ProgressReport(train.steps, attempt.start, self.options.progress, train.log_every)
        for note in notes:
            progress.note(note)
        try:
            state, start = self._begin(comps, attempt.point, attempt.number, progress)
            self.event(Event.LAYOUT, step=start, **comps.layout.record(state))
            context = LoopContext(
                plan=plan,
                comps=comps,
                recorders=self.recorders,
                checkpointer=self.checkpointer,
                progress=progress,
                guard=self.guard,
                attempt=attempt.number,
                max_inflight=self._max_inflight(comps, state, start, progress),
                stop_at=self.options.stop_at,
                writer_process=self.writer_process,
                profile=ProfileWindow.from_plan(plan, self.rundir.root, primary=self.cluster.primary),
            )
            result = train_loop(context, state, start)
            digest = full_hash(comps.layout.to_host(saved_part(result.state, plan.checkpoint.save)))
        except Exception as err:
            self.event(
                Event.ERROR,
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
                background=self.background[-20:],
            )
            raise
        finally:
            progress.close()
        return self._record_end(attempt, result, start, digest)

    def _record_end(self, attempt: _Attempt, result: LoopResult, start: int, digest: str) -> RunResult:
        """How the attempt ended, as an event and as the run's result."""
        total = self.plan.spec.train.steps
        # An attempt that resumed at the last step did only what the one before left undone.
        to_finish = {"resumed_to_finish": True} if result.status == "finished" and start >= total else {}
        self.event(
            Event(result.status),
            step=result.step,
            full_hash=digest,
            signal=result.signal,
            eval=result.eval_metrics,
            **to_finish,
        )
        return RunResult(
            result.status,
            self.rundir.root,
            result.step,
            total,
            digest,
            result.eval_metrics,
            attempt.compiled.count,
            result.signal,
            began=start,
        )
