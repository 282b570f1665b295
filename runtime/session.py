"""One process's turn at a run directory: lock, resume, train, record, release."""

from __future__ import annotations

import time
import traceback
from typing import Any

from exp import __version__
from exp.compiler import Plan

from .build import Components, build_components, saved_part
from .checkpoint import Checkpointer
from .cluster import Cluster
from .damaged_records import DAMAGED_EVENT, read_env, survey_records
from .environment import environment_class
from .hashing import full_hash
from .launch import RunFailed, RunOptions, RunResult
from .ledger_repair import recover_checkpoint_records
from .loop import Recorders, train_loop
from .lora_base import BaseWeights
from .progress import ProgressReport
from .records import Discard, JsonLines, RunLock, ignore_damage, read_jsonl
from .resume import ResumePoint, check_identity, find_resume_point
from .rundir import RecordedPlan, RunDir, RunRefused, operational_changes, upgrade_record, write_json_atomic
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
            self.event("environment_change", before=None, after=env["class"], unreadable=f"env.json: {unreadable}")
            notes.append(
                f"env.json {unreadable}: rewritten from this environment; "
                "whether the environment class changed is unknown"
            )
        elif before is not None and before.get("class_id") != env["class_id"]:
            self.event("environment_change", before=before.get("class"), after=env["class"])
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
            self.event("upgrade", **record)
            write_json_atomic(self.rundir.plan, self.plan.to_dict())
            added = ", ".join([*record["added"], *record["parts"].get("added", [])]) or "none"
            return [f"upgraded this run directory's plan (new: {added}); the old plan is kept as {kept.name}"]
        loaded = previous.plan if previous is not None else None
        changes = operational_changes(loaded, self.plan) if loaded is not None else {}
        if loaded is None or changes or loaded.source != self.plan.source:
            write_json_atomic(self.rundir.plan, self.plan.to_dict())
        if changes:
            self.event("operational_change", changes=changes)
            return [f"operational changes: {', '.join(changes)}"]
        return []

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
        total = self.plan.spec.train.steps
        # Resuming at the last step: the steps are done, the end (final evaluation, records) is not.
        to_finish = {"to_finish": True} if point.step >= total else {}
        self.event("resume", step=point.step, attempt=attempt, full_hash=point.meta["full_hash"], **to_finish)
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
            if event.get("event") == "finished" and event.get("step") == step:
                found = event
        return found

    def _set_aside(self, point: ResumePoint | None) -> None:
        """Record and move away what failed verification or never finished."""
        assert self.checkpointer is not None
        for note in self.checkpointer.tidied:
            self.event("checkpoint_cleanup", note=note)
        for step, reason in sorted((point.rejected if point else {}).items()):
            moved = self.checkpointer.set_aside(step, "rejected")  # every process, same order: agreed verdicts
            who = {"processes": point.rejected_by[step]} if point and self.cluster.multi else {}
            self.event("checkpoint_rejected", step=step, reason=reason, moved_to=str(moved), **who)

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
        attempt = sum(1 for e in read_jsonl(rundir.events, ignore_damage) if e.get("event") in ("start", "resume"))
        comps = build_components(plan, options.spec_dir, options.allow_imports, self.cluster, self.base)
        if plan.checkpoint.enabled:
            self.checkpointer = Checkpointer(
                rundir.checkpoints(plan, options.spec_dir),
                plan.checkpoint,
                total,
                rundir.root / "rejected",
                self.cluster,
            )
            equivalent = self.previous.equivalent if self.previous else frozenset()
            check_identity(self.checkpointer, plan, comps, str(rundir.root), equivalent)  # may refuse: nothing written
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
        finished = self._finished_record(point.step) if point is not None and point.step >= total else None
        if point is not None and finished is not None and not point.rejected:
            recorded = finished.get("eval")
            metrics = recorded if isinstance(recorded, dict) else None
            compiled = _compilations(comps)
            return RunResult("complete", rundir.root, point.step, total, point.meta["full_hash"], metrics, compiled)
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
            recovered = recover_checkpoint_records(self.checkpointer, self.recorders.ledger, attempt)
            if recovered:
                self.event("checkpoint_records_recovered", steps=recovered)

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
        # An attempt that resumed at the last step did only what the one before left undone.
        to_finish = {"resumed_to_finish": True} if result.status == "finished" and start >= total else {}
        self.event(
            result.status,
            step=result.step,
            full_hash=digest,
            signal=result.signal,
            eval=result.eval_metrics,
            **to_finish,
        )
        return RunResult(
            result.status,
            rundir.root,
            result.step,
            total,
            digest,
            result.eval_metrics,
            _compilations(comps),
            result.signal,
            began=start,
        )
