"""`data.kind = "text"`: your own corpus, tokenized, addressed by step at any size.

The corpus stays memory-mapped (Arrow or ArrayRecord); nothing of size N is
ordered in memory: the held-out split and each epoch's order are keyed
bijections of the record numbers (`IndexShuffle`), so the batch at step s is
computed from (seed, s) alone, a resume costs nothing, and an epoch boundary
costs nothing either. Packing needs every training example's length once:
they are cached outside the run directory, keyed by the corpus and
tokenizer fingerprints.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expspec.atomic_files import write_atomic
from expspec.compiler.content_hash import content_digest
from expspec.compiler.input_files import files_digest
from expspec.compiler.user_cache import cache_root
from expspec.runtime.data.base import EVAL_LIMIT, DataContext, DataError
from expspec.runtime.data.corpus import Records, detect_format, expand_files, open_records
from expspec.runtime.data.index_shuffle import EpochOrder, IndexShuffle, stream_key
from expspec.runtime.data.packing import PackedRows, SingleRows, assemble_rows, pack_starts, targets_of
from expspec.runtime.data.prefetch import Prefetcher
from expspec.runtime.data.token_examples import (
    TokenExample,
    chat_example,
    prompt_completion_example,
    text_example,
)
from expspec.runtime.data.tokenizer import Tokenizer, load_tokenizer
from expspec.runtime.types import Batch, DataInfo
from expspec.spec.data import TextData

__all__ = ["Split", "TextCorpusSource", "build_text_source"]

_CHUNK = 4096
"""Examples tokenized at once when measuring lengths for packing."""
_RELEASE_EVERY = 1
"""Training batches between hand-backs of the mapped corpus's resident pages: each random
record read maps a read-ahead window (~450 KiB measured), so without them RSS grows to the
corpus's size within a few thousand records. A hand-back costs ~1 ms, off the loop thread."""


@dataclass(frozen=True)
class Split:
    """The examples of one split: example i is record `shuffle(offset + i)` (or
    `offset + i` unshuffled) of `records`."""

    records: Records
    size: int
    offset: int = 0
    shuffle: IndexShuffle | None = None

    def record_ids(self, examples: np.ndarray) -> np.ndarray:
        positions = np.asarray(examples, np.int64) + self.offset
        return self.shuffle(positions) if self.shuffle is not None else positions


def _fields(spec: TextData) -> dict[str, str]:
    """Spec key -> record field, for the fields the record style reads."""
    if spec.style == "chat":
        return {"data.messages_field": str(spec.messages_field)}
    if spec.style == "prompt_completion":
        return {"data.prompt_field": str(spec.prompt_field), "data.completion_field": str(spec.completion_field)}
    return {"data.text_field": spec.text_field}


class _Encoder:
    """Records to token examples in the spec's record style; a record that cannot be
    made into one is a `DataError` naming its file and record number."""

    def __init__(self, spec: TextData, tok: Tokenizer) -> None:
        self.tok = tok
        self.style = spec.style
        self.keys = _fields(spec)
        self.fields = list(self.keys.values())

    def examples(self, split: Split, examples: np.ndarray) -> list[TokenExample]:
        ids = split.record_ids(examples)
        rows = split.records.rows(ids, self.fields)
        out = []
        for record, row in zip(ids.tolist(), rows, strict=True):
            try:
                out.append(self._one(row))
            except (ValueError, TypeError, KeyError) as err:
                file, number = split.records.locate(record)
                key = next(iter(self.keys))
                raise DataError(f"{key}: {file}: record {number}: {err}") from None
        return out

    def _one(self, row: dict[str, Any]) -> TokenExample:
        if self.style == "text":
            return text_example(self.tok, row[self.fields[0]])
        if self.style == "prompt_completion":
            return prompt_completion_example(self.tok, row[self.fields[0]], row[self.fields[1]])
        return chat_example(self.tok, row[self.fields[0]])

    def describe(self) -> dict[str, Any]:
        """What decides an example's tokens besides the record and the tokenizer."""
        return {"style": self.style, "fields": self.keys}


def _held_out(n: int, fraction: float) -> int:
    if n < 2:
        raise DataError(f"data.files: {n} record(s) cannot be split into train and eval; add data or data.eval_files")
    return min(max(round(n * fraction), 1), n - 1)


def _splits(spec: TextData, ctx: DataContext, cache: Path) -> tuple[Split, Split]:
    """(train, held-out): the held-out files, or a seeded fraction of the records."""

    def read(patterns: tuple[str, ...], key: str) -> Records:
        files = expand_files(patterns, ctx.spec_dir, key)
        fmt = spec.format if spec.format != "auto" else detect_format(files, key)
        return open_records(
            files, fmt, sample_by=spec.sample_by, fields=_fields(spec), cache=cache, key=key, rehash=ctx.rehash
        )

    train = read(spec.files, "data.files")
    if spec.eval_files is not None:
        held = read(spec.eval_files, "data.eval_files")
        return Split(train, len(train)), Split(held, len(held))
    shuffle = IndexShuffle(len(train), stream_key(ctx.seeds["data.split"], "split"))
    n_eval = _held_out(len(train), spec.test_fraction)
    return Split(train, len(train) - n_eval, n_eval, shuffle), Split(train, n_eval, 0, shuffle)


class TextCorpusSource:
    """Batches of token rows from a corpus; see the module docstring."""

    def __init__(self, spec: TextData, ctx: DataContext) -> None:
        cache = cache_root()
        self._tok = load_tokenizer(_resolve(spec.tokenizer, ctx.spec_dir))
        self._encoder = _Encoder(spec, self._tok)
        self._train, self._eval = _splits(spec, ctx, cache)
        self._seq_len, self._batch_size, self._packed = spec.seq_len, spec.batch_size, spec.pack
        self.fingerprint = self._fingerprint(cache, ctx.rehash)
        shuffle_seed = ctx.seeds["data.shuffle"]
        if spec.style == "chat":
            # A chat record can be malformed in ways only its rendering shows (no assistant
            # turn, a template that refuses it): tokenize them all now, before the run writes
            # anything, rather than stop at the step that meets one.
            self._train_lengths(cache)
            self._encoder.examples(self._eval, np.arange(min(self._eval.size, EVAL_LIMIT)))
        if spec.pack:
            order = IndexShuffle(self._train.size, stream_key(shuffle_seed, "pack"))
            targets = targets_of(self._train_lengths(cache)[order(np.arange(self._train.size))], spec.seq_len)
            self._rows: SingleRows | PackedRows = PackedRows(pack_starts(targets, spec.seq_len), order)
        else:
            self._rows = SingleRows(self._train.size)
        self._order = EpochOrder(len(self._rows), shuffle_seed)
        self._eval_cache: list[Batch] | None = None
        self.info = DataInfo(
            task="lm",
            vocab_size=self._tok.vocab_size,
            seq_len=spec.seq_len,
            train_size=len(self._rows),
            eval_size=min(self._eval.size, EVAL_LIMIT),
        )

    def _fingerprint(self, cache: Path, rehash: bool) -> str:
        """The corpus's exact content: training files, then held-out files (a split by
        fraction reads the same files, and the split seed is in the plan)."""
        parts = {}
        for name, split in (("train", self._train), ("eval", self._eval)):
            try:
                parts[name] = content_digest(split.records.files, cache=cache / "fingerprints", rehash=rehash)
            except OSError as err:
                raise DataError(f"data.files: cannot read {err.filename}: {err.strerror or err}") from None
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _train_lengths(self, cache: Path) -> np.ndarray:
        """Tokens of every training example (in split order), cached by what decides them."""
        key = {
            "data": self.fingerprint,
            "tokenizer": files_digest(self._tok.files),
            "encoder": self._encoder.describe(),
            "split": [self._train.size, self._train.offset, getattr(self._train.shuffle, "key", None)],
        }
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        path = cache / "lengths" / f"{name}.npy"
        try:
            lengths = np.load(path, mmap_mode="r")
            if lengths.shape == (self._train.size,):
                return lengths
        except (OSError, ValueError):
            pass  # absent or damaged: measure again
        lengths = np.empty(self._train.size, np.int32)
        for start in range(0, self._train.size, _CHUNK):
            chunk = np.arange(start, min(start + _CHUNK, self._train.size))
            lengths[chunk] = [len(e.tokens) for e in self._encoder.examples(self._train, chunk)]
        buffer = io.BytesIO()
        np.save(buffer, lengths)
        write_atomic(path, [buffer.getbuffer()])
        return lengths

    def _batch(self, split: Split, rows: SingleRows | PackedRows, row_ids: np.ndarray, weights: np.ndarray) -> Batch:
        members = rows.members(row_ids)
        flat = np.concatenate(members) if members else np.zeros(0, np.int64)
        examples = iter(self._encoder.examples(split, flat))
        grouped = [[next(examples) for _ in m] for m in members]
        return assemble_rows(grouped, self._seq_len, self._tok.pad_id, packed=self._packed, row_weights=weights)

    def train_batch(self, step: int) -> Batch:
        if step % _RELEASE_EVERY == 0:
            self._train.records.release_pages()
        rows = self._order.batch(step, self._batch_size)
        return self._batch(self._train, self._rows, rows, np.ones(len(rows), np.float32))

    def eval_batches(self) -> list[Batch]:
        """The first `EVAL_LIMIT` held-out examples in rows as training makes them (packed
        in their own order), in full batches; padding rows weigh 0."""
        if self._eval_cache is None:
            count = min(self._eval.size, EVAL_LIMIT)
            if self._packed:
                lengths = [len(e.tokens) for e in self._encoder.examples(self._eval, np.arange(count))]
                rows: SingleRows | PackedRows = PackedRows(
                    pack_starts(targets_of(np.asarray(lengths), self._seq_len), self._seq_len), lambda p: p
                )
            else:
                rows = SingleRows(count)
            n, b = len(rows), self._batch_size
            batches = []
            for start in range(0, n, b):
                real = np.arange(start, min(start + b, n))
                ids = np.concatenate([real, np.zeros(b - len(real), np.int64)])
                weights = np.concatenate([np.ones(len(real), np.float32), np.zeros(b - len(real), np.float32)])
                batch = self._batch(self._eval, rows, ids, weights)
                for array in batch.values():
                    array.setflags(write=False)
                batches.append(batch)
            self._eval_cache = batches
        return list(self._eval_cache)

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer the rows are made with (generation decodes with it)."""
        return self._tok

    def eval_pairs(self, count: int) -> list[tuple[str, str]]:
        """The first `count` held-out (prompt, completion) records, for exact-match evaluation;
        empty unless the records are prompt/completion."""
        if self._encoder.style != "prompt_completion":
            return []
        ids = self._eval.record_ids(np.arange(min(count, self._eval.size)))
        prompt, completion = self._encoder.fields
        return [(row[prompt], row[completion]) for row in self._eval.records.rows(ids, self._encoder.fields)]


def _resolve(path: str, spec_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else spec_dir / candidate


def build_text_source(spec: TextData, ctx: DataContext) -> TextCorpusSource | Prefetcher:
    """The source, behind a prefetch thread unless `data.prefetch` is 0."""
    source = TextCorpusSource(spec, ctx)
    return Prefetcher(source, spec.prefetch) if spec.prefetch else source
