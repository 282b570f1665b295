"""What every data source shares: the protocol, stateless batch order, eval padding.

Order is a pure function of (seed, step) so a resumed or restarted run sees the
same batches as an uninterrupted one without saving any iterator state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from expspec.errors import BadInput
from expspec.runtime.types import Batch, DataInfo

__all__ = [
    "EVAL_LIMIT",
    "ArraySource",
    "BatchOrder",
    "DataContext",
    "DataError",
    "DataSource",
    "close_source",
    "padded_batches",
    "read_bytes",
    "resolve_path",
    "split_indices",
]

EVAL_LIMIT = 4096
"""Held-out examples (or windows) evaluated at most, so evaluation stays fast."""


class DataError(BadInput):
    """The data cannot be built from the spec; the message is meant for the user."""


@dataclasses.dataclass(frozen=True)
class DataContext:
    """What every data builder is given besides its spec section."""

    seeds: Mapping[str, int]
    """The plan's seed tree; each source reads the streams it uses."""
    spec_dir: Path
    """Relative data paths and custom modules resolve against the spec's folder."""
    allow_imports: tuple[str, ...] = ()
    """Module prefixes whose import (custom code) the caller allowed."""
    rehash: bool = False
    """Fingerprint data files by reading them again, not from the cache by file identity."""


@runtime_checkable
class DataSource(Protocol):
    """Batches for the training loop, addressed by step so no iterator state exists."""

    info: DataInfo
    fingerprint: str

    def train_batch(self, step: int) -> Batch: ...

    def eval_batches(self) -> list[Batch]: ...


class BatchOrder:
    """Which training examples step `step` uses: a pure function of (seed, step).

    Each epoch is a fresh permutation seeded by (seed, epoch), so any step can
    be computed in any process without replaying earlier ones. The last epoch's
    permutation is cached because steps are usually asked for in order.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        if size < 1:
            raise DataError("the training split is empty")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = max(1, size // batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        cached = self._cached  # one read: safe if a prefetch thread also asks
        if cached is not None and cached[0] == epoch:
            return cached[1]
        perm = np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(self.size)
        perm.setflags(write=False)
        self._cached = (epoch, perm)
        return perm

    def indices(self, step: int) -> np.ndarray:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, within = divmod(step, self.steps_per_epoch)
        perm = self.permutation(epoch)
        if self.size < self.batch_size:
            # Fewer examples than a batch: wrap the permutation so shapes stay static.
            return np.resize(perm, self.batch_size)
        start = within * self.batch_size
        return perm[start : start + self.batch_size]


def close_source(source: DataSource) -> None:
    """End a source's background work (a prefetch thread), if it has any, when an attempt ends."""
    close = getattr(source, "close", None)
    if callable(close):
        close()


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: a permutation from the `data.split` seed, its head held out."""
    if n < 2:
        raise DataError(f"{n} example(s) cannot be split into train and eval; need at least 2")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def padded_batches(count: int, batch_size: int, gather: Callable[[np.ndarray], Batch]) -> list[Batch]:
    """The first `EVAL_LIMIT` of `count` items in full batches, padding weighted 0.

    Every batch has exactly `batch_size` rows so a jitted eval step compiles once;
    padding repeats item 0 and its weight keeps it out of the metrics.
    """
    count = min(count, EVAL_LIMIT)
    pad = -count % batch_size
    order = np.concatenate([np.arange(count), np.zeros(pad, dtype=np.int64)])
    weight = np.concatenate([np.ones(count, np.float32), np.zeros(pad, np.float32)])
    batches = []
    for start in range(0, len(order), batch_size):
        batch = dict(gather(order[start : start + batch_size]))
        batch["weight"] = weight[start : start + batch_size].copy()
        for array in batch.values():
            array.setflags(write=False)  # cached and shared between calls
        batches.append(batch)
    return batches


def resolve_path(path: str, spec_dir: Path) -> Path:
    """Relative data paths are relative to the spec file, not the working directory."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(spec_dir) / candidate


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what}: file not found: {path}") from None
    except OSError as err:
        raise DataError(f"{what}: cannot read {path}: {err.strerror or err}") from None


class ArraySource:
    """A source over in-memory (x, y) arrays with a seeded train/eval split."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        info: DataInfo,
        fingerprint: str,
        *,
        batch_size: int,
        test_fraction: float,
        seeds: Mapping[str, int],
    ) -> None:
        train, held_out = split_indices(len(x), test_fraction, seeds["data.split"])
        # Rows of the original arrays in each split, kept for audits and tests.
        self.train_index, self.eval_index = train, held_out
        self._x_train, self._y_train = x[train], y[train]
        self._x_eval, self._y_eval = x[held_out], y[held_out]
        self._order = BatchOrder(len(train), batch_size, seeds["data.shuffle"])
        self._batch_size = batch_size
        self._eval: list[Batch] | None = None
        self.info = dataclasses.replace(info, train_size=len(train), eval_size=min(len(held_out), EVAL_LIMIT))
        self.fingerprint = fingerprint

    def train_batch(self, step: int) -> Batch:
        idx = self._order.indices(step)
        return {"x": self._x_train[idx], "y": self._y_train[idx]}

    def eval_batches(self) -> list[Batch]:
        if self._eval is None:
            self._eval = padded_batches(
                len(self._x_eval),
                self._batch_size,
                lambda idx: {"x": self._x_eval[idx], "y": self._y_eval[idx]},
            )
        return list(self._eval)
