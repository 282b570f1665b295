"""Rows of token examples: one example per row, or several packed into one.

A row holds `seq_len` targets. Packed, each document keeps its own segment
number and positions that restart at 0, so the model treats it as if it were
alone; a row's layout is decided once, before training, from the examples'
lengths, so row `r` is still found in O(1) and the batch at a step stays a
pure function of (seed, step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from expspec.runtime.data.token_examples import TokenExample
from expspec.runtime.types import Batch

__all__ = ["PackedRows", "SingleRows", "assemble_rows", "pack_starts", "targets_of"]


def targets_of(lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """Targets each example puts in a row: its tokens but the first (each token is
    predicted from the ones before it), at most `seq_len`."""
    return np.clip(np.asarray(lengths, np.int64) - 1, 0, seq_len)


def pack_starts(targets: np.ndarray, seq_len: int) -> np.ndarray:
    """Row boundaries over examples in packing order: row r holds examples
    [starts[r], starts[r+1]), as many as fit `seq_len` targets, greedily.

    One binary search per row over the running total, so a corpus of millions
    of documents packs in a second or two.
    """
    total = np.concatenate([[0], np.cumsum(targets, dtype=np.int64)])
    n = len(targets)
    starts = [0]
    start = 0
    while start < n:
        end = int(np.searchsorted(total, total[start] + seq_len, side="right")) - 1
        start = max(end, start + 1)  # every example fits alone: it was clipped to seq_len
        starts.append(start)
    return np.asarray(starts, np.int64)


class SingleRows:
    """One example per row, truncated to `seq_len` targets."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def members(self, rows: np.ndarray) -> list[np.ndarray]:
        """The examples of each row."""
        return [np.asarray([r], np.int64) for r in np.asarray(rows).tolist()]


class PackedRows:
    """Several examples per row: example `order(p)` at packing position p, rows cut by `starts`."""

    def __init__(self, starts: np.ndarray, order: Callable[[np.ndarray], np.ndarray]) -> None:
        self.starts = starts
        self.order = order

    def __len__(self) -> int:
        return len(self.starts) - 1

    def members(self, rows: np.ndarray) -> list[np.ndarray]:
        """The examples of each row, in packing order."""
        return [self.order(np.arange(self.starts[r], self.starts[r + 1])) for r in np.asarray(rows).tolist()]


def assemble_rows(
    rows: Sequence[Sequence[TokenExample]], seq_len: int, pad_id: int, *, packed: bool, row_weights: np.ndarray
) -> Batch:
    """A batch of rows: `x` tokens, `y` next tokens, `weight` per target (0 on padding and
    context), and, packed, `segments` (1, 2, ... per document; 0 on padding) and `positions`.

    `row_weights` multiplies each row's weights (0 for the rows that pad a last eval batch).
    """
    b = len(rows)
    x = np.full((b, seq_len), pad_id, np.int32)
    y = np.full((b, seq_len), pad_id, np.int32)
    weight = np.zeros((b, seq_len), np.float32)
    segments = np.zeros((b, seq_len), np.int32)
    positions = np.zeros((b, seq_len), np.int32)
    for r, docs in enumerate(rows):
        at = 0
        for number, example in enumerate(docs, start=1):
            n = min(len(example.tokens) - 1, seq_len - at)
            if n <= 0:
                continue
            x[r, at : at + n] = example.tokens[:n]
            y[r, at : at + n] = example.tokens[1 : n + 1]
            weight[r, at : at + n] = example.weights[1 : n + 1] * row_weights[r]
            segments[r, at : at + n] = number
            positions[r, at : at + n] = np.arange(n, dtype=np.int32)
            at += n
    batch = {"x": x, "y": y, "weight": weight}
    if packed:
        batch.update(segments=segments, positions=positions)
    return batch
