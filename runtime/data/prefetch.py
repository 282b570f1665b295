"""Training batches assembled ahead of the loop, in one background thread.

Batches are a pure function of the step, so computing them early changes
nothing but when the host does the work: reading, tokenising and packing step
s+1 overlap the device computing step s.
"""

from __future__ import annotations

import threading
from typing import Any

from expspec.runtime.data.base import DataSource
from expspec.runtime.types import Batch

__all__ = ["Prefetcher"]


class Prefetcher:
    """A DataSource whose train batches are assembled ahead of the loop in one background thread.

    After step s is asked, the worker computes steps s+1 ... s+depth. Batches
    are exactly those of the wrapped source (the same arrays its `train_batch`
    returned), prefetched or not. Steps are expected in increasing order from
    any start; asking the last step again returns it again, a step already
    queued skips those before it, and any other step (a resume, a jump back or
    far ahead) discards what was queued and restarts there.
    An exception the source raises for step k is raised, the same object, from
    `train_batch(k)` in the caller's thread, and not before.

    What this requires of the source: `train_batch` runs in the worker thread
    (never two calls at once) while `eval_batches` and any other attribute run
    in the caller's thread, possibly at the same time. The two paths must not
    share mutable state, or must update it with a single assignment of a new
    value (as `BatchOrder` and `EpochOrder` do for their caches).

    The worker is one daemon thread, not a pool: a process stopping on SIGTERM
    or an exception never waits for it at exit. `close()` stops it.
    """

    def __init__(self, source: DataSource, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._source = source
        self.depth = depth
        self.info = source.info
        self.fingerprint = source.fingerprint
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Everything below is guarded by `_cond`. `_generation` changes at every
        # restart, so a batch the worker finishes for an abandoned plan is dropped.
        self._generation = 0
        self._next: int | None = None  # the step the worker computes next; None: idle
        self._limit = 0  # the worker computes steps below this
        self._computing: int | None = None  # the step in the worker's hands now
        self._ready: dict[int, tuple[Batch | None, BaseException | None]] = {}
        self._last: tuple[int, Batch] | None = None  # the step returned last, for a repeated ask

    def train_batch(self, step: int) -> Batch:
        """The source's batch for `step`, computed ahead when the steps come in order."""
        with self._cond:
            batch = None if self._closed else self._take(step)
        # Closed (before or during the wait): no worker, so the caller computes.
        return self._source.train_batch(step) if batch is None else batch

    def _take(self, step: int) -> Batch | None:
        """The batch from the worker; None if the prefetcher is closed meanwhile. Holds `_cond`."""
        last = self._last
        if last is not None and last[0] == step:
            return dict(last[1])
        if step not in self._ready and step != self._computing and step != self._next:
            self._restart(step)
        self._limit = step + self.depth + 1
        self._cond.notify_all()
        self._start_worker()
        while step not in self._ready:
            if self._closed:  # by another thread while this one waited
                return None
            self._cond.wait()
        batch, error = self._ready.pop(step)
        for stale in [s for s in self._ready if s < step]:
            del self._ready[stale]
        if error is not None:
            # Nothing past a failed step was computed: the next ask restarts.
            self._last = None
            self._restart(None)
            raise error
        assert batch is not None
        self._last = (step, batch)
        return dict(batch)

    def eval_batches(self) -> list[Batch]:
        """The source's eval batches, computed in the caller's thread."""
        return self._source.eval_batches()

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker (after the batch it is computing, if any); idempotent.

        Later `train_batch` calls compute in the caller's thread.
        """
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._last = None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this object lacks: the source's extras
        # (e.g. `unigram_entropy`). Private names are not forwarded, which also
        # keeps a half-built object (no `_source` yet) from recursing.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._source, name)

    def _restart(self, step: int | None) -> None:
        """Drop the queue and plan to compute from `step` (None: stay idle). Holds `_cond`."""
        self._generation += 1
        self._ready.clear()
        self._next = step
        self._computing = None

    def _start_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="expspec-prefetch", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._next is None or self._next >= self._limit):
                    self._cond.wait()
                if self._closed:
                    return
                step, generation = self._next, self._generation
                self._computing, self._next = step, step + 1
            try:
                result: tuple[Batch | None, BaseException | None] = (self._source.train_batch(step), None)
            except BaseException as error:  # handed to the caller, whatever it is
                result = (None, error)
            with self._cond:
                if generation == self._generation and not self._closed:
                    self._ready[step] = result
                    self._computing = None
                    if result[1] is not None:
                        self._next = None  # nothing past a failure until the caller asks
                    self._cond.notify_all()
