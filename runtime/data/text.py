"""Byte-level language modelling on a text: tokens are byte values, vocabulary 256.

Bytes rather than characters so any file works without a tokenizer and the
vocabulary is fixed before the text is seen.
"""

from __future__ import annotations

import hashlib

import numpy as np

from expspec.runtime.data.base import (
    EVAL_LIMIT,
    BatchOrder,
    DataContext,
    DataError,
    padded_batches,
    read_bytes,
    resolve_path,
)
from expspec.runtime.types import Batch, DataInfo
from expspec.spec.data import TextChars

__all__ = ["TextSource", "build_text"]

VOCAB_SIZE = 256


class TextSource:
    """Windows of `seq_len + 1` bytes starting every `seq_len` bytes.

    Windows are sliced from the token stream when asked for, so memory stays
    at one copy of the text however many windows it has.
    """

    def __init__(
        self, raw: bytes, name: str, *, seq_len: int, batch_size: int, test_fraction: float, shuffle_seed: int
    ) -> None:
        tokens = np.frombuffer(raw, dtype=np.uint8)
        held_out = round(len(tokens) * test_fraction)
        self._train, self._eval = tokens[: len(tokens) - held_out], tokens[len(tokens) - held_out :]
        self._seq_len, self._batch_size = seq_len, batch_size
        self._offsets = np.arange(seq_len + 1)
        train_windows, eval_windows = self._windows(self._train), self._windows(self._eval)
        if train_windows < 1 or eval_windows < 1:
            part = "training part" if train_windows < 1 else "held-out tail"
            raise DataError(
                f"{name}: text too short: {len(tokens)} bytes leave the {part} "
                f"({len(self._train) if train_windows < 1 else len(self._eval)} bytes) without one "
                f"window of seq_len + 1 = {seq_len + 1} bytes; use a longer text or a smaller data.seq_len"
            )
        self._order = BatchOrder(train_windows, batch_size, shuffle_seed)
        self._eval_windows = eval_windows
        self._eval_cache: list[Batch] | None = None
        self.info = DataInfo(
            task="lm",
            vocab_size=VOCAB_SIZE,
            seq_len=seq_len,
            train_size=train_windows,
            eval_size=min(eval_windows, EVAL_LIMIT),
        )
        self.fingerprint = hashlib.sha256(raw).hexdigest()

    def _windows(self, part: np.ndarray) -> int:
        return max(0, (len(part) - 1) // self._seq_len)

    def _gather(self, part: np.ndarray, windows: np.ndarray) -> Batch:
        rows = part[(windows * self._seq_len)[:, None] + self._offsets].astype(np.int32)
        return {"x": np.ascontiguousarray(rows[:, :-1]), "y": np.ascontiguousarray(rows[:, 1:])}

    def train_batch(self, step: int) -> Batch:
        return self._gather(self._train, self._order.indices(step))

    def eval_batches(self) -> list[Batch]:
        if self._eval_cache is None:
            self._eval_cache = padded_batches(
                self._eval_windows, self._batch_size, lambda idx: self._gather(self._eval, idx)
            )
        return list(self._eval_cache)

    def unigram_entropy(self) -> float:
        """Entropy (nats) of the training bytes: the loss a model ignoring context reaches."""
        counts = np.bincount(self._train, minlength=VOCAB_SIZE).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())


def build_text(spec: TextChars, ctx: DataContext) -> TextSource:
    path = resolve_path(spec.path, ctx.spec_dir)
    return TextSource(
        read_bytes(path, "data.path"),
        str(path),
        seq_len=spec.seq_len,
        batch_size=spec.batch_size,
        test_fraction=spec.test_fraction,
        shuffle_seed=ctx.seeds["data.shuffle"],
    )
