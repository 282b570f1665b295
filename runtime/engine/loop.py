"""The training loop: dispatch, throttle, record, evaluate, checkpoint, stop.

The loop dispatches step s+1 before it looks at step s: the device never waits
for the host to log. At most `max_inflight` steps are dispatched and unfinished;
beyond that the loop blocks on the oldest, then records its metrics and ledger
fingerprints, which by then are ready. Host work per step is O(1): nothing
re-reads or re-stacks the history.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import jax
import numpy as np

from expspec.compiler import Plan
from expspec.runtime.engine.build import Components, saved_part
from expspec.runtime.engine.checkpoint import Checkpointer
from expspec.runtime.engine.hashing import combine_fingerprints, full_hash, leaf_paths
from expspec.runtime.engine.objectives import eval_means
from expspec.runtime.engine.progress import ProgressReport
from expspec.runtime.processes.cluster import agree_any
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


@dataclass(frozen=True)
class _Snapshot:
    """A checkpoint copied on the device, not yet handed to Orbax."""

    step: int
    copy: Any
    forced: bool
    """Written at once (the last step, a stop): no later step to overlap with."""
    digest: Future[str]
    """Its full hash, computed on the hasher thread (or already, in a cluster)."""


def _hash_when_ready(copy: Any) -> str:
    """The full hash of a device copy, on the worker thread: it waits for the copy there."""
    return full_hash(jax.device_get(jax.block_until_ready(copy)))


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
        self.attempt, self.stop_at = ctx.attempt, ctx.stop_at
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
        self.uncommitted: deque[tuple[int, str]] = deque()
        """Checkpoints handed to Orbax whose commit is not ledgered yet, oldest first: (step, full hash)."""
        self.snapshot: _Snapshot | None = None
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exp-checkpoint-hash")
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

    def save(self, state: Any, step: int, *, force: bool) -> None:
        """Checkpoint `state` (the state after `step`) if the policy or `force` says so.

        The state is copied on the device first: its buffers are donated to the
        next step while the save may still read them. The copy's full hash is
        computed on a worker thread (xxhash releases the GIL) while the device
        trains on, and the copy goes to Orbax once its hash is known
        (`write_snapshot`). A forced save (the last step, a stop, a preemption)
        has no next step to overlap with and is written at once.
        """
        if self.checkpointer is None:
            return
        if not force and not self.checkpointer.due(step):
            return
        self.write_snapshot(wait=True)  # one save at a time, in step order
        copy = self.comps.steps.snapshot(saved_part(state, self.plan.checkpoint.save))
        if self.cluster.multi:
            # Hashing gathers the copy with a collective, which every process must
            # issue at the same point of its program: here, not on a worker thread.
            began = time.perf_counter()
            digest: Future[str] = Future()
            digest.set_result(full_hash(self.comps.layout.to_host(copy)))
            self.snapshot = _Snapshot(step, copy, force, digest)
            self.write_snapshot(wait=True, began=began)
            return
        self.snapshot = _Snapshot(step, copy, force, self.hasher.submit(_hash_when_ready, copy))
        if force:
            self.write_snapshot(wait=True)

    def write_snapshot(self, *, wait: bool, began: float | None = None) -> None:
        """Hand the pending copy to Orbax if its hash is ready (or, with `wait`, once it is).

        `began`: when the loop started waiting on this save, if before this call."""
        if self.snapshot is None or self.checkpointer is None:
            return
        snapshot = self.snapshot
        if not wait and not snapshot.digest.done():
            return
        self.snapshot = None
        began = time.perf_counter() if began is None else began
        step, digest = snapshot.step, snapshot.digest.result()
        meta = {
            "step": step,
            "full_hash": digest,
            "save": self.plan.checkpoint.save,
            "trajectory": self.plan.fingerprints.trajectory,
            "spec": self.plan.fingerprints.spec,
            "data": self.comps.data.fingerprint,
            "base_weights": self.comps.base_weights,
            "base_checkpoint": self.comps.base_checkpoint,
        }
        if self.checkpointer.save(step, snapshot.copy, meta, force=snapshot.forced):
            # Orbax waited for every earlier write to finish before it started
            # this one, and would have raised had one failed: they all committed.
            self._ledger_checkpoints(len(self.uncommitted))
            blocked = time.perf_counter() - began
            # How long the loop waited on this save: what checkpointing costs the run.
            self.rec.events.write(
                {"event": Event.CHECKPOINT_SAVE, "step": step, "blocked_s": blocked, "time": time.time()}
            )
            self.uncommitted.append((step, digest))
            self.record_commits()  # a synchronous save has committed already

    def record_commits(self, *, wait: bool = False) -> None:
        """Ledger each checkpoint as soon as its own write has committed (all of them after `wait`).

        A checkpoint enters the ledger only once it is on disk: a save cut short
        by a kill must never be taken for one that exists. Nor may a committed
        one wait for later saves: with saves closer together than a write, some
        save is always in progress, and a kill would lose every record held back.
        Asked once per retired step, and only while a record is pending, the
        check costs one `stat` of the oldest pending step's folder.
        """
        if not self.uncommitted or self.checkpointer is None:
            return
        if wait:
            # Finished is not committed: a background write that failed is no longer
            # "in progress" either. `wait` returns once all have committed, or raises Orbax's error.
            self.checkpointer.wait()
            self._ledger_checkpoints(len(self.uncommitted))
            return
        committed = 0
        for step, _ in self.uncommitted:  # Orbax writes one save at a time, in step order
            if not self.checkpointer.committed(step):
                break
            committed += 1
        self._ledger_checkpoints(committed)

    def _ledger_checkpoints(self, count: int) -> None:
        """Write the records of the `count` oldest pending checkpoints, known to have committed."""
        for _ in range(count):
            step, digest = self.uncommitted.popleft()
            self.rec.ledger.write({"kind": Kind.CHECKPOINT, "step": step, "full_hash": digest, "attempt": self.attempt})

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
            state, packed = (steps.train if hashed else steps.train_unhashed)(state, batch)
            self.inflight.append(_Pending(step, packed))
            self.write_snapshot(wait=False)  # an earlier step's checkpoint, while this step computes
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
                self.write_snapshot(wait=True)
                if self.plan.checkpoint.on_preemption:
                    self.save(state, step, force=True)
                self.record_commits(wait=True)
                return LoopResult("preempted", step, state, self.eval_metrics, stop)
            if self.checkpointer is not None and (step == end or self.checkpointer.due(step)):
                if step == end:
                    self.drain()
                self.save(state, step, force=step == end)
        self.write_snapshot(wait=True)
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
        return loop.run(state, start)
    finally:
        loop.hasher.shutdown(wait=True)
