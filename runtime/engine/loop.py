"""The training loop: dispatch, throttle, record, evaluate, checkpoint, stop.

The loop dispatches step s+1 before it looks at step s: the device never waits
for the host to log. At most `max_inflight` steps are dispatched and unfinished;
beyond that the loop blocks on the oldest, then records its metrics and ledger
fingerprints, which by then are ready. Host work per step is O(1): nothing
re-reads or re-stacks the history.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import jax
import numpy as np

from expspec.compiler import Plan
from expspec.runtime.engine.build import Components, saved_part
from expspec.runtime.engine.checkpoint import Checkpointer
from expspec.runtime.engine.checkpoint_writer import CheckpointWriter, WriterProcess, open_writer
from expspec.runtime.engine.hashing import combine_fingerprints, leaf_paths
from expspec.runtime.engine.objectives import eval_means
from expspec.runtime.engine.profiler import ProfileError, ProfileWindow
from expspec.runtime.engine.progress import ProgressReport
from expspec.runtime.processes.cluster import Cluster, agree_any
from expspec.runtime.processes.signals import PreemptionGuard
from expspec.runtime.runs.records import JsonLines
from expspec.runtime.runs.run_files import Event, Kind

__all__ = ["LoopContext", "LoopResult", "Recorders", "train_loop"]

Status = Literal["finished", "stopped", "preempted"]

AGREE_EVERY = 10
"""In a cluster, how often (in steps) the processes agree whether any was asked to stop.

Every process must stop after the same step, or the others would wait in a
collective for ever; agreeing is itself a collective that waits for the steps
in flight, so it is not done every step."""


@dataclass
class Recorders:
    """The run's append-only files."""

    ledger: JsonLines
    metrics: JsonLines
    events: JsonLines


@dataclass(frozen=True)
class LoopContext:
    """What one attempt's loop works with, besides the state it trains."""

    plan: Plan
    comps: Components
    recorders: Recorders
    checkpointer: Checkpointer | None
    """None when the plan saves no checkpoints."""
    progress: ProgressReport
    guard: PreemptionGuard
    attempt: int
    """This attempt's number (0 for the first), written into its ledger records."""
    max_inflight: int
    """Steps dispatched and unfinished at most: the plan's, or chosen for "auto"."""
    stop_at: int | None = None
    """Stop after this step (`--stop-at`), before the end."""
    writer_process: WriterProcess | None = None
    """Started with the attempt when the plan saves through a writer process; the loop's saves use it."""
    profile: ProfileWindow | None = None
    """The steps to trace with `jax.profiler` (`logging.profile`), on process 0."""


@dataclass
class LoopResult:
    status: Status
    step: int
    state: Any
    eval_metrics: dict[str, float] | None
    signal: str | None = None


@dataclass
class _Pending:
    step: int
    packed: jax.Array
    """Metrics and fingerprints of the step, in the layout of `Steps.report`."""


class SaveClock:
    """`checkpoint.every_seconds`: a save once that long has passed since the attempt's
    start or its last save. In a cluster the processes' clocks differ, so they agree
    (a collective) every `AGREE_EVERY` steps whether any is due, and all save together."""

    def __init__(self, every_seconds: float | None, cluster: Cluster) -> None:
        self.every, self.cluster = every_seconds, cluster
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every is None:
            return False
        late = time.monotonic() - self.last >= self.every
        if not self.cluster.multi:
            return late
        return step % AGREE_EVERY == 0 and agree_any(self.cluster, late)

    def saved(self) -> None:
        self.last = time.monotonic()


def _fingerprint_record(step: int, fps: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "kind": Kind.STEP,
        "step": step,
        "params": combine_fingerprints(fps["params"]),
        "opt": combine_fingerprints(fps["opt"]),
        # Per-leaf fingerprints, 16 hex digits each, in the order of the "leaves" record.
        "leaves": np.ascontiguousarray(fps["params"], "<u4").tobytes().hex()
        + np.ascontiguousarray(fps["opt"], "<u4").tobytes().hex(),
    }


class _Loop:
    def __init__(self, ctx: LoopContext) -> None:
        self.plan, self.comps, self.rec = ctx.plan, ctx.comps, ctx.recorders
        self.checkpointer, self.progress, self.guard = ctx.checkpointer, ctx.progress, ctx.guard
        self.attempt, self.stop_at, self.writer_process = ctx.attempt, ctx.stop_at, ctx.writer_process
        self.profile = ctx.profile
        train = ctx.plan.spec.train
        self.total, self.log_every, self.ledger_every, self.eval_every = (
            train.steps,
            train.log_every,
            train.ledger_every,
            train.eval_every,
        )
        self.max_inflight = ctx.max_inflight
        self.inflight: deque[_Pending] = deque()
        self.eval_metrics: dict[str, float] | None = None
        self.writer: CheckpointWriter | None = None
        """Opened with the state, when the plan saves checkpoints."""
        self.clock = SaveClock(ctx.plan.checkpoint.every_seconds, ctx.comps.layout.cluster)
        self._last_time = time.perf_counter()
        self._last_step = 0
        self.cluster = ctx.comps.layout.cluster

    def stop_requested(self, step: int) -> str | None:
        """The signal that asks this run to stop after `step`, if any (agreed across a cluster)."""
        if not self.cluster.multi:
            return self.guard.requested
        if step % AGREE_EVERY or not agree_any(self.cluster, self.guard.requested is not None):
            return None
        return self.guard.requested or "SIGTERM (to another process)"

    # -- records ---------------------------------------------------------
    def retire(self) -> None:
        """Wait for the oldest dispatched step and record what it produced."""
        self.record_commits()
        pending = self.inflight.popleft()
        metrics, fps = self.comps.steps.report.unpack(np.asarray(pending.packed))
        step = pending.step
        if fps is not None:
            self.rec.ledger.write({**_fingerprint_record(step, fps), "attempt": self.attempt})
        if step % self.log_every == 0 or step == self.total:
            now = time.perf_counter()
            rate = (step - self._last_step) / (now - self._last_time) if now > self._last_time else 0.0
            self._last_time, self._last_step = now, step
            record = {"step": step, "split": "train", **metrics, "steps_per_s": rate, "time": time.time()}
            self.rec.metrics.write(record)
        self.progress.update(step, metrics["loss"])
        if self.profile is not None:
            self.profile.after_retired(step)

    def drain(self) -> None:
        while self.inflight:
            self.retire()

    # -- evaluation and checkpoints -------------------------------------
    def evaluate(self, state: Any, step: int, *, final: bool = False) -> bool:
        """Evaluate `state` and record it; False when the final evaluation was given up for a stop.

        The final evaluation comes after the last checkpoint has committed and can
        be long: a stop asked for meanwhile ends the attempt there (single process;
        a cluster evaluates to the end), and the next attempt evaluates instead.
        """
        sums: dict[str, jax.Array] | None = None
        for batch in self.comps.data.eval_batches():
            if final and self.guard.requested and not self.cluster.multi:
                return False
            out = self.comps.steps.evaluate(state, self.comps.place_batch(batch))
            sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
        if sums is None:
            return True
        host = {name: float(value) for name, value in jax.device_get(sums).items()}
        self.eval_metrics = eval_means(host, self.comps.data.info.task)
        if self.plan.spec.train.eval_generate:
            self.eval_metrics["exact_match"] = self.exact_match(state)
        self.rec.metrics.write({"step": step, "split": "eval", **self.eval_metrics, "time": time.time()})
        self.progress.note(f"eval at step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in self.eval_metrics.items()))
        return True

    def exact_match(self, state: Any) -> float:
        """The share of the first `train.eval_generate` held-out prompts the model completes
        exactly, by greedy decoding (a measure of what a fine-tune learned, not of the loss)."""
        from expspec.runtime.generate import exact_match

        data = self.comps.data
        pairs = data.eval_pairs(self.plan.spec.train.eval_generate)
        longest = max(len(data.tokenizer.encode(completion)) for _, completion in pairs)
        model = self.comps.parts.merge(state["params"], state["frozen"])
        return exact_match(model, data.tokenizer, pairs, max_new_tokens=longest + 1)

    def due(self, step: int) -> bool:
        """Whether the checkpoint policy saves after `step`: its step cadence or its clock."""
        assert self.checkpointer is not None
        return self.checkpointer.due(step) | self.clock.due(step)

    def save(self, state: Any, step: int, *, force: bool) -> None:
        """Checkpoint `state` (the state after `step`); the writer finishes it behind the loop."""
        if self.writer is None:
            return
        meta = {
            "step": step,
            "save": self.plan.checkpoint.save,
            "trajectory": self.plan.fingerprints.trajectory,
            "spec": self.plan.fingerprints.spec,
            "data": self.comps.data.fingerprint,
            "base_weights": self.comps.base_weights,
            "base_checkpoint": self.comps.base_checkpoint,
        }
        self.writer.submit(step, saved_part(state, self.plan.checkpoint.save), meta, force=force)
        self.clock.saved()

    def handed(self, step: int, blocked: float) -> None:
        # How long the loop waited on this save: what checkpointing costs the run.
        self.rec.events.write({"event": Event.CHECKPOINT_SAVE, "step": step, "blocked_s": blocked, "time": time.time()})

    def record_commits(self, *, wait: bool = False) -> None:
        """Ledger each checkpoint once its own write has committed (all of them after `wait`).

        A checkpoint enters the ledger only once it is on disk: a save cut short
        by a kill must never be taken for one that exists. Nor may a committed
        one wait for later saves: with saves closer together than a write, some
        save is always in progress, and a kill would lose every record held back.
        """
        if self.writer is None:
            return
        for saved in self.writer.wait() if wait else self.writer.committed():
            record = {"kind": Kind.CHECKPOINT, "step": saved.step, "full_hash": saved.full_hash}
            self.rec.ledger.write({**record, "attempt": self.attempt})

    def open_writer(self, state: Any) -> None:
        if self.checkpointer is None:
            return
        self.writer = open_writer(
            self.checkpointer,
            choice=self.plan.checkpoint.writer,
            process=self.writer_process,
            state=saved_part(state, self.plan.checkpoint.save),
            snapshot=self.comps.steps.snapshot,
            cluster=self.cluster,
            to_host=self.comps.layout.to_host,
            on_handed=self.handed,
        )

    # -- the loop --------------------------------------------------------
    def run(self, state: Any, start: int) -> LoopResult:
        data, steps = self.comps.data, self.comps.steps
        end = min(self.total, self.stop_at) if self.stop_at is not None else self.total
        self._last_step = start
        self.rec.ledger.write(
            {
                "kind": Kind.LEAVES,
                "params": leaf_paths(state["params"]),
                "opt": leaf_paths(state["opt"]),
                "attempt": self.attempt,
            }
        )
        if self.guard.requested and not self.cluster.multi:  # asked to stop before the first step
            return LoopResult("preempted", start, state, None, self.guard.requested)
        if start == 0:  # the initial state, so a difference in initialisation shows as step 0
            fps = jax.device_get(steps.fingerprint(state))
            self.rec.ledger.write({**_fingerprint_record(0, fps), "attempt": self.attempt})
        step = start
        batch = self.comps.place_batch(data.train_batch(step)) if step < end else None
        while step < end:
            step += 1
            hashed = step % self.ledger_every == 0 or step == self.total
            if self.profile is not None:
                self.profile.before_dispatch(step)
            state, packed = (steps.train if hashed else steps.train_unhashed)(state, batch)
            self.inflight.append(_Pending(step, packed))
            if step < end:  # assemble the next batch while the device computes
                batch = self.comps.place_batch(data.train_batch(step))
            while len(self.inflight) > self.max_inflight:
                self.retire()
            if self.eval_every and step % self.eval_every == 0 and step < self.total:
                self.drain()
                self.evaluate(state, step)
            stop = self.stop_requested(step)
            if stop:
                self.drain()
                if self.plan.checkpoint.on_preemption:
                    self.save(state, step, force=True)
                self.record_commits(wait=True)
                return LoopResult("preempted", step, state, self.eval_metrics, stop)
            if self.writer is not None and (step == end or self.due(step)):
                if step == end:
                    self.drain()
                self.save(state, step, force=step == end)
        self.drain()
        self.record_commits(wait=True)
        if step >= self.total:  # also an attempt that resumed at the last step to finish the run
            if not self.evaluate(state, step, final=True):
                return LoopResult("preempted", step, state, self.eval_metrics, self.guard.requested)
            return LoopResult("finished", step, state, self.eval_metrics)
        return LoopResult("stopped", step, state, self.eval_metrics)


def train_loop(ctx: LoopContext, state: Any, start: int) -> LoopResult:
    """Train from `start` (steps already done) to the end or `ctx.stop_at`, with at most
    `ctx.max_inflight` steps dispatched and unfinished."""
    loop = _Loop(ctx)
    try:
        loop.open_writer(state)
        return loop.run(state, start)
    finally:
        if loop.writer is not None:
            loop.writer.close()
        if loop.profile is not None:
            _close_quietly(loop.profile)


def _close_quietly(profile: ProfileWindow) -> None:
    """Stop a trace still open; a failure to write it raises only when nothing else is on its way out."""
    if sys.exc_info()[1] is None:
        profile.close()
        return
    try:
        profile.close()
    except ProfileError:
        pass
