"""One process's turn at a run directory: lock, resume, train, record, release."""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

import jax

from exp.compiler import Plan

from .build import Components, build_components, saved_part
from .checkpoint import Checkpointer
from .environment import environment_class
from .hashing import full_hash
from .launch import RunFailed, RunOptions, RunResult
from .loop import Recorders, train_loop
from .progress import ProgressReport
from .records import JsonLines, RunLock, read_jsonl
from .rundir import RunDir, RunRefused, operational_changes, write_json_atomic
from .signals import PreemptionGuard

__all__ = ["Session"]


class Session:
    """Holds the run directory for one process (a context manager)."""

    def __init__(self, plan: Plan, rundir: RunDir, options: RunOptions, previous: Plan | None) -> None:
        self.plan, self.rundir, self.options, self.previous = plan, rundir, options, previous
        self.lock = RunLock(rundir.lock)
        self.recorders: Recorders | None = None
        self.checkpointer: Checkpointer | None = None

    def __enter__(self) -> Session:
        from .records import RunLocked

        try:
            self.lock.acquire()
        except RunLocked as err:
            raise RunRefused(str(err)) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self.recorders is not None:
            for recorder in (self.recorders.ledger, self.recorders.metrics, self.recorders.events):
                recorder.close()
        self.lock.release()

    # -- helpers ---------------------------------------------------------
    def event(self, name: str, **fields: Any) -> None:
        assert self.recorders is not None
        self.recorders.events.write({"event": name, "time": time.time(), **fields})

    def _latest_checkpoint(self, comps: Components) -> tuple[int, dict[str, Any]] | None:
        assert self.checkpointer is not None
        steps = self.checkpointer.steps()
        if not steps:
            return None
        step = steps[-1]
        meta = self.checkpointer.read_meta(step)
        if meta.get("trajectory") != self.plan.fingerprints.trajectory:
            raise RunRefused(
                f"{self.checkpointer.directory}/{step}: checkpoint of trajectory {str(meta.get('trajectory'))[:12]}, "
                f"this spec has {self.plan.fingerprints.trajectory[:12]}"
            )
        if meta.get("data") != comps.data.fingerprint:
            raise RunRefused(
                f"{self.rundir.root}: the data changed since this run started "
                f"(fingerprint {str(meta.get('data'))[:12]} -> {comps.data.fingerprint[:12]}); use another --run-dir"
            )
        return step, meta

    def _restore(self, comps: Components, step: int, meta: dict[str, Any]) -> Any:
        assert self.checkpointer is not None
        saved = saved_part(comps.state, meta.get("save", "full"))
        try:
            restored, _ = self.checkpointer.restore(step, saved)
        except Exception as err:  # Orbax/TensorStore raise plain exceptions for unreadable bytes
            reason = str(err).splitlines()[0][:200]
            raise RunFailed(f"{self.checkpointer.directory}/{step}: checkpoint cannot be read: {reason}") from err
        digest = full_hash(restored)
        if digest != meta.get("full_hash"):
            raise RunFailed(
                f"{self.checkpointer.directory}/{step}: restored state hashes to {digest[:12]}, "
                f"the checkpoint recorded {str(meta.get('full_hash'))[:12]}: refusing to train on it"
            )
        return {**comps.state, **restored}

    def _record_setup(self, env: dict[str, Any]) -> list[str]:
        """plan.json and env.json; the differences from the recorded ones."""
        notes = []
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
        self, comps: Components, latest: tuple[int, dict[str, Any]] | None, attempt: int, progress: ProgressReport
    ) -> tuple[Any, int]:
        """The state to train from and its step: restored, or fresh."""
        if latest is None:
            self.event(
                "start",
                step=0,
                attempt=attempt,
                trajectory=self.plan.fingerprints.trajectory,
                data=comps.data.fingerprint,
                base_weights=comps.base_weights,
            )
            return comps.state, 0
        start, meta = latest
        state = self._restore(comps, start, meta)
        self.event("resume", step=start, attempt=attempt, full_hash=meta["full_hash"])
        progress.note(f"resumed {self.rundir.root} at step {start}/{self.plan.spec.train.steps}")
        return state, start

    # -- the run ---------------------------------------------------------
    def run(self) -> RunResult:
        plan, options, rundir = self.plan, self.options, self.rundir
        total = plan.spec.train.steps
        comps = build_components(plan, options.spec_dir, options.allow_imports)
        if plan.checkpoint.enabled:
            self.checkpointer = Checkpointer(rundir.checkpoints(plan, options.spec_dir), plan.checkpoint, total)
        latest = self._latest_checkpoint(comps) if self.checkpointer else None
        if latest is not None and latest[0] >= total and self.previous is not None:
            return RunResult(
                "complete",
                rundir.root,
                latest[0],
                total,
                latest[1].get("full_hash"),
                None,
                comps.steps.train._cache_size(),
            )

        self.recorders = Recorders(
            ledger=JsonLines(rundir.ledger), metrics=JsonLines(rundir.metrics), events=JsonLines(rundir.events)
        )
        attempt = sum(1 for e in read_jsonl(rundir.events) if e.get("event") in ("start", "resume"))
        if self.lock.previous and self.lock.previous.get("pid"):
            self.event("lock_takeover", previous=self.lock.previous)
        notes = self._record_setup(environment_class(dict(comps.mesh.shape)))

        progress = ProgressReport(total, latest[0] if latest else 0, options.progress, plan.spec.train.log_every)
        for note in notes:
            progress.note(note)
        try:
            state, start = self._begin(comps, latest, attempt, progress)
            with PreemptionGuard() as guard:
                result = train_loop(
                    plan,
                    comps,
                    state,
                    start,
                    recorders=self.recorders,
                    checkpointer=self.checkpointer,
                    progress=progress,
                    guard=guard,
                    stop_at=options.stop_at,
                    attempt=attempt,
                )
                if self.checkpointer is not None:
                    self.checkpointer.wait()
            digest = full_hash(jax.device_get(saved_part(result.state, plan.checkpoint.save)))
        except Exception as err:
            self.event("error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
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
            comps.steps.train._cache_size(),
            result.signal,
        )
