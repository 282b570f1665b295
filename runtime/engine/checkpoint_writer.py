"""Handing checkpoints to Orbax without holding up the loop: from this process, or a writer process.

Both writers take the state the loop has just produced, whose buffers the next
step will donate, copy it on the device at once, and finish the save behind the
loop's back. Each answers, in step order, with the saves that have committed
and their full hashes: the loop ledgers a checkpoint only then, so a kill can
never leave a record of a save that is not on disk.

- `ThreadWriter` saves through the training process's own `CheckpointManager`
  (Orbax's background threads). Clusters use it: a save there is collective.
- `ProcessWriter` copies the state into shared memory and lets a writer process
  (`checkpoint_worker.py`) run Orbax. Orbax's Python costs 10-30 ms per save
  whatever the state's size; in the training process it competes with the loop
  for the GIL, which cost a 1 ms step half its speed at a save every 100 steps.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from typing import Any

import jax
import numpy as np

from expspec.compiler import CheckpointPolicy
from expspec.errors import RunFailure
from expspec.runtime.engine.checkpoint import Checkpointer
from expspec.runtime.engine.hashing import full_hash, is_key
from expspec.runtime.processes.cluster import Cluster
from expspec.runtime.types import PyTree

__all__ = [
    "AUTO_PROCESS_MAX_BYTES",
    "AUTO_PROCESS_SAVES",
    "AUTO_PROCESS_STEPS",
    "CheckpointWriter",
    "ProcessWriter",
    "SaveFailed",
    "Saved",
    "ThreadWriter",
    "WriterProcess",
    "open_writer",
    "wants_process",
]

AUTO_PROCESS_SAVES = 10
AUTO_PROCESS_STEPS = 1000
"""`writer = "auto"` starts a writer process for a run of at least this many saves and steps.

The process costs 1.5-2 s of CPU to start (it imports JAX and Orbax). While the
run builds and compiles a core is mostly idle and takes it (a fresh digits
run's first step came no later), and each save it takes out of the training
process saved about 40 ms on the digits MLP on two cores (bench P1). A short
run on a busy machine (a test suite on two workers) pays the start in full and
has few saves to win it back: 20% slower, measured on the audit tests."""

AUTO_PROCESS_MAX_BYTES = 2**30
"""...and a state of at most this size: the shared buffer holds two copies of it in
host memory, where Orbax in process holds one, and past this size Orbax's fixed
cost per save is small beside the time the save's bytes take anyway."""

OnHanded = Callable[[int, float], None]
"""Told (step, seconds the loop waited) when a save is handed to Orbax or to the writer process."""


class SaveFailed(RunFailure):
    """A checkpoint could not be written; the checkpoints committed before it stand."""


@dataclass(frozen=True)
class Saved:
    step: int
    full_hash: str


class CheckpointWriter:
    """Saves in step order, one answer per save once it has committed."""

    def submit(self, step: int, state: PyTree, meta: dict[str, Any], *, force: bool) -> None:
        """Start saving `state` (the state after `step`); `meta` is the record without its hash.
        A forced save (the last step, a stop) has no next step to overlap with: it is handed over at once."""
        raise NotImplementedError

    def committed(self) -> list[Saved]:
        """The saves that have committed since the last answer, oldest first; does not wait."""
        raise NotImplementedError

    def wait(self) -> list[Saved]:
        """Wait for every save submitted; the ones not answered yet, oldest first."""
        raise NotImplementedError

    def close(self) -> None:
        """Let saves in progress finish and release what the writer holds."""


def _hash_when_ready(copy: PyTree) -> str:
    """The full hash of a device copy, on a worker thread: it waits for the copy there."""
    return full_hash(jax.device_get(jax.block_until_ready(copy)))


@dataclass(frozen=True)
class _Copy:
    step: int
    copy: PyTree
    meta: dict[str, Any]
    digest: Future[str]


class ThreadWriter(CheckpointWriter):
    """Orbax's own background save, with the full hash computed on a worker thread
    (xxhash releases the GIL) while the device trains on."""

    def __init__(
        self,
        checkpointer: Checkpointer,
        snapshot: Callable[[PyTree], PyTree],
        cluster: Cluster,
        to_host: Callable[[PyTree], PyTree],
        on_handed: OnHanded,
    ) -> None:
        self.checkpointer, self.snapshot, self.cluster, self.to_host = checkpointer, snapshot, cluster, to_host
        self.on_handed = on_handed
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exp-checkpoint-hash")
        self.pending: _Copy | None = None
        self.uncommitted: deque[Saved] = deque()
        """Saves handed to Orbax whose commit has not been answered, oldest first."""

    def submit(self, step: int, state: PyTree, meta: dict[str, Any], *, force: bool) -> None:
        began = time.perf_counter()
        self._hand_over(wait=True, began=began)  # one save at a time, in step order
        copy = self.snapshot(state)
        if self.cluster.multi:
            # Hashing gathers the copy with a collective, which every process must
            # issue at the same point of its program: here, not on a worker thread.
            digest: Future[str] = Future()
            digest.set_result(full_hash(self.to_host(copy)))
            self.pending = _Copy(step, copy, meta, digest)
            self._hand_over(wait=True, began=began)
            return
        self.pending = _Copy(step, copy, meta, self.hasher.submit(_hash_when_ready, copy))
        if force:
            self._hand_over(wait=True, began=began)

    def _hand_over(self, *, wait: bool, began: float | None = None) -> None:
        """Give the pending copy to Orbax if its hash is ready (or, with `wait`, once it is)."""
        pending = self.pending
        if pending is None or (not wait and not pending.digest.done()):
            return
        self.pending = None
        began = time.perf_counter() if began is None else began
        digest = pending.digest.result()
        self.checkpointer.save(pending.step, pending.copy, {**pending.meta, "full_hash": digest})
        self.uncommitted.append(Saved(pending.step, digest))
        self.on_handed(pending.step, time.perf_counter() - began)

    def committed(self) -> list[Saved]:
        """Asked once per retired step, and only while a save is pending, the check
        costs one `stat` of the oldest pending step's folder (`Checkpointer.committed`)."""
        self._hand_over(wait=False)
        done: list[Saved] = []
        # Orbax writes one save at a time, in step order.
        while self.uncommitted and self.checkpointer.committed(self.uncommitted[0].step):
            done.append(self.uncommitted.popleft())
        return done

    def wait(self) -> list[Saved]:
        self._hand_over(wait=True)
        # Finished is not committed: a background write that failed is no longer
        # "in progress" either. `wait` returns once all have committed, or raises Orbax's error.
        self.checkpointer.wait()
        done = list(self.uncommitted)
        self.uncommitted.clear()
        return done

    def close(self) -> None:
        self.hasher.shutdown(wait=True)


def _aligned(n: int) -> int:
    return (n + 63) // 64 * 64


@dataclass(frozen=True)
class _Layout:
    """Where each leaf of the state lies in a slot of the shared buffer."""

    treedef: Any
    leaves: tuple[tuple[str, tuple[int, ...], int], ...]
    """(dtype name, shape, byte offset) per leaf."""
    nbytes: int

    @classmethod
    def of(cls, state: PyTree) -> _Layout:
        leaves, treedef = jax.tree.flatten(state)
        out, offset = [], 0
        for leaf in leaves:
            out.append((np.dtype(leaf.dtype).name, tuple(leaf.shape), offset))
            offset += _aligned(leaf.size * np.dtype(leaf.dtype).itemsize)
        return cls(treedef, tuple(out), max(offset, 64))


class WriterProcess:
    """The writer process and the pipes and buffer shared with it.

    Started when the run starts, before the model is built and compiled, so that
    its imports (JAX, Orbax: seconds of CPU) are done by the first save; it opens
    the checkpoint folder only when told to (`open`), after the training process
    has tidied it.
    """

    def __init__(self) -> None:
        self.fd = os.memfd_create("expspec-checkpoint")
        self.gone: str | None = None
        """Why the process can take no more saves, once it cannot."""
        self.stderr: deque[str] = deque(maxlen=20)
        self.answers: deque[tuple[Any, ...]] = deque()
        self.changed = threading.Condition()
        child_reads, parent_writes = Pipe(duplex=False)
        parent_reads, child_writes = Pipe(duplex=False)
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": str(bool(jax.config.jax_enable_x64))}
        env.pop("XLA_FLAGS", None)  # the run's device count and thread settings are not the writer's
        fds = (child_reads.fileno(), child_writes.fileno(), self.fd)
        self.child = subprocess.Popen(
            [sys.executable, "-m", "expspec.runtime.engine.checkpoint_worker", *map(str, fds)],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        child_reads.close()
        child_writes.close()
        self.requests = parent_writes
        threading.Thread(target=self._listen, args=(parent_reads,), name="exp-checkpoint-answers", daemon=True).start()
        threading.Thread(target=self._drain_stderr, name="exp-checkpoint-stderr", daemon=True).start()

    def _listen(self, answers: Connection) -> None:
        """Collect the writer's answers; its end of the pipe closing is its exit."""
        while True:
            try:
                message = answers.recv()
            except (EOFError, OSError):
                break
            with self.changed:
                self.answers.append(message)
                self.changed.notify_all()
        code = self.child.wait()
        with self.changed:
            tail = "; ".join(line for line in self.stderr if line)[-500:]
            self.gone = self.gone or f"the checkpoint writer process exited ({code}){': ' + tail if tail else ''}"
            self.changed.notify_all()

    def _drain_stderr(self) -> None:
        assert self.child.stderr is not None
        for line in self.child.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self.requests.send(message)
        except OSError as err:
            with self.changed:
                self.gone = self.gone or f"the checkpoint writer process is gone ({err})"
                self.changed.notify_all()

    def close(self) -> None:
        """Let the saves asked for finish, then end the process (once; later calls do nothing)."""
        if self.requests.closed:
            return
        self.send(("close",))
        self.requests.close()
        try:
            self.child.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        os.close(self.fd)


class ProcessWriter(CheckpointWriter):
    """Saves through a `WriterProcess`; the loop only starts a device copy.

    The copy goes to the shared buffer (two slots, so one save can be written
    while the next is copied) on a transfer thread; the writer process hashes it,
    saves it with Orbax and answers once the save has committed.
    """

    SLOTS = 2

    def __init__(
        self,
        checkpointer: Checkpointer,
        snapshot: Callable[[PyTree], PyTree],
        state: PyTree,
        on_handed: OnHanded,
        process: WriterProcess,
    ) -> None:
        self.snapshot, self.on_handed, self.process = snapshot, on_handed, process
        self.layout = _Layout.of(state)
        size = self.layout.nbytes * self.SLOTS
        os.ftruncate(process.fd, size)
        self.buffer = mmap.mmap(process.fd, size)
        process.send(("open", str(checkpointer.directory), checkpointer.options, size))
        self.transfer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exp-checkpoint-copy")
        self.submitted = 0
        self.outstanding: deque[int] = deque()
        """Steps submitted and not answered, oldest first."""
        self.answered: deque[Saved] = deque()

    def _collect(self) -> None:
        """Move the writer's answers into `answered` (holding `process.changed`); raise on a failure."""
        process = self.process
        while process.answers:
            kind, step, detail = process.answers.popleft()
            self.outstanding.remove(step)
            if kind == "failed":
                raise SaveFailed(f"checkpoint of step {step} failed in the writer process: {detail}")
            self.answered.append(Saved(step, detail))
        if self.outstanding and process.gone is not None:
            raise SaveFailed(f"checkpoint of step {self.outstanding[0]} unfinished: {process.gone}")

    def submit(self, step: int, state: PyTree, meta: dict[str, Any], *, force: bool) -> None:
        began = time.perf_counter()
        with self.process.changed:
            # A slot is free once the save that used it last has been answered.
            self._collect()
            while len(self.outstanding) >= self.SLOTS:
                self.process.changed.wait()
                self._collect()
            self.outstanding.append(step)
        slot = self.submitted % self.SLOTS
        self.submitted += 1
        copy = self.snapshot(state)
        sent = self.transfer.submit(self._send, step, copy, slot, meta)
        if force:
            sent.result()
        self.on_handed(step, time.perf_counter() - began)

    def _send(self, step: int, copy: PyTree, slot: int, meta: dict[str, Any]) -> None:
        """On the transfer thread: wait for the copy, put it in its slot, ask the writer to save it."""
        base = slot * self.layout.nbytes
        for leaf, (dtype, shape, offset) in zip(jax.tree.leaves(copy), self.layout.leaves, strict=True):
            target = np.ndarray(shape, jax.numpy.dtype(dtype), buffer=self.buffer, offset=base + offset)
            np.copyto(target, np.asarray(jax.device_get(leaf)))
        del copy
        leaves = [(dtype, shape, base + offset) for dtype, shape, offset in self.layout.leaves]
        self.process.send(("save", step, self.layout.treedef, leaves, meta))

    def committed(self) -> list[Saved]:
        with self.process.changed:
            self._collect()
            done = list(self.answered)
            self.answered.clear()
        return done

    def wait(self) -> list[Saved]:
        self.transfer.submit(lambda: None).result()  # every copy sent
        with self.process.changed:
            self._collect()
            while self.outstanding:
                self.process.changed.wait()
                self._collect()
            done = list(self.answered)
            self.answered.clear()
        return done

    def close(self) -> None:
        self.transfer.shutdown(wait=True)
        self.process.close()
        self.buffer.close()


def wants_process(policy: CheckpointPolicy, cluster: Cluster, total_steps: int) -> bool:
    """Whether a run with this policy saves through a writer process: `writer = "process"`,
    or "auto" with at least `AUTO_PROCESS_SAVES` saves and `AUTO_PROCESS_STEPS` steps. A cluster's saves are collective,
    a synchronous policy waits anyway: both save in process."""
    if not policy.enabled or cluster.multi or not policy.async_save or not hasattr(os, "memfd_create"):
        return False
    if policy.writer == "auto":
        saves = total_steps // policy.every_steps if policy.every_steps else 0
        return saves >= AUTO_PROCESS_SAVES and total_steps >= AUTO_PROCESS_STEPS
    return policy.writer == "process"


def open_writer(
    checkpointer: Checkpointer,
    *,
    choice: str,
    process: WriterProcess | None,
    state: PyTree,
    snapshot: Callable[[PyTree], PyTree],
    cluster: Cluster,
    to_host: Callable[[PyTree], PyTree],
    on_handed: OnHanded,
) -> CheckpointWriter:
    """A `ProcessWriter` through `process` when there is one, else a `ThreadWriter`.
    A state with typed PRNG keys (which have no bytes to share) saves in process, and
    so does, under `choice = "auto"`, one larger than `AUTO_PROCESS_MAX_BYTES`."""
    shareable = process is not None and not any(is_key(leaf) for leaf in jax.tree.leaves(state))
    if shareable and not (choice == "auto" and _Layout.of(state).nbytes > AUTO_PROCESS_MAX_BYTES):
        return ProcessWriter(checkpointer, snapshot, state, on_handed, process)
    if process is not None:
        process.close()
    return ThreadWriter(checkpointer, snapshot, cluster, to_host, on_handed)
