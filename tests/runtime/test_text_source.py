"""`data.kind = "text"`: epochs, loss weights and resume, on real files and the shipped tokenizer."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expspec.runtime.data import build_data, close_source
from expspec.runtime.data.tokenizer import load_tokenizer
from expspec.spec.data import TextData
from tests.conftest import EXAMPLES

TOKENIZER = EXAMPLES / "data" / "sft_task" / "tokenizer"
"""The shipped character tokenizer: one token per character, `<s>`, `</s>`, `<pad>`, ChatML markers."""
SEEDS = {"data.shuffle": 11, "data.split": 12}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPSPEC_CACHE_DIR", str(tmp_path / "cache"))


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _source(folder: Path, seeds: dict[str, int] = SEEDS, **data: Any):
    spec = TextData.model_validate({"kind": "text", "tokenizer": str(TOKENIZER), **data})
    return build_data(spec, seeds, folder)


def _documents(folder: Path, n: int = 1000) -> None:
    # Documents of different lengths (2 to 7 characters), each naming its own number.
    _jsonl(folder / "train.jsonl", [{"text": f"d{i}" + "x" * (i % 4)} for i in range(n)])
    _jsonl(folder / "eval.jsonl", [{"text": "held out"}])


def _segments(batch: dict[str, np.ndarray], tok) -> list[str]:
    """Each document of each row, decoded from its targets (EOS dropped)."""
    texts = []
    segments = batch.get("segments", (batch["weight"] > 0).astype(np.int32))
    for r in range(len(batch["y"])):
        for number in sorted(set(segments[r].tolist()) - {0}):
            ids = batch["y"][r][segments[r] == number].tolist()
            texts.append(tok.decode([i for i in ids if i != tok.eos_id]))
    return texts


@pytest.mark.parametrize("pack", [False, True])
def test_one_epoch_sees_every_document_once_and_seeds_differ(tmp_path, pack):
    _documents(tmp_path)
    tok = load_tokenizer(TOKENIZER)
    orders = []
    for seed in (1, 2):
        source = _source(
            tmp_path,
            {**SEEDS, "data.shuffle": seed},
            files="train.jsonl",
            eval_files="eval.jsonl",
            batch_size=7,
            seq_len=24,
            pack=pack,
            prefetch=0,
        )
        rows, batch_size = source.info.train_size, 7
        seen: list[str] = []
        for step in range(math.ceil(rows / batch_size)):
            batch = source.train_batch(step)
            keep = min(batch_size, rows - step * batch_size)  # the epoch ends inside the last batch
            seen += _segments({k: v[:keep] for k, v in batch.items()}, tok)
        assert collections.Counter(seen) == collections.Counter(f"d{i}" + "x" * (i % 4) for i in range(1000))
        if pack:
            assert rows < 1000  # several documents per row
        orders.append(seen)
    assert orders[0] != orders[1]


def test_an_epoch_boundary_inside_a_batch_starts_the_next_epoch_in_another_order(tmp_path):
    _documents(tmp_path, n=10)
    tok = load_tokenizer(TOKENIZER)
    source = _source(tmp_path, files="train.jsonl", eval_files="eval.jsonl", batch_size=4, seq_len=16, prefetch=0)
    seen = [text for step in range(5) for text in _segments(source.train_batch(step), tok)]
    first, second = seen[:10], seen[10:20]
    assert sorted(first) == sorted(second) and first != second


def _expected_weights(prompt_len: int, completion_len: int, seq_len: int) -> np.ndarray:
    # Targets: the prompt's characters (after BOS), then the completion's and EOS.
    w = np.zeros(seq_len, np.float32)
    w[prompt_len : prompt_len + completion_len + 1] = 1.0
    return w


@pytest.mark.parametrize("pack", [False, True])
def test_prompt_completion_weights_count_only_completion_tokens(tmp_path, pack):
    records = [{"q": f"{a}+{a * 7}=", "a": str(a * 8)} for a in range(40)]
    _jsonl(tmp_path / "sft.jsonl", records)
    tok = load_tokenizer(TOKENIZER)
    source = _source(
        tmp_path,
        files="sft.jsonl",
        test_fraction=0.1,
        prompt_field="q",
        completion_field="a",
        batch_size=8,
        seq_len=32,
        pack=pack,
        prefetch=0,
    )
    by_prompt = {r["q"]: r["a"] for r in records}
    checked = 0
    for batch in [source.train_batch(s) for s in range(3)] + source.eval_batches():
        segments = batch["segments"] if pack else (batch["x"] != tok.pad_id).astype(np.int32)
        for r in range(len(batch["x"])):
            pad = segments[r] == 0
            assert not batch["weight"][r][pad].any()  # no weight on padding
            for number in sorted(set(segments[r].tolist()) - {0}):
                at = segments[r] == number
                text = tok.decode(batch["x"][r][at].tolist()[1:])  # the document without its BOS
                prompt = text[: text.index("=") + 1]
                weights = batch["weight"][r][at]
                if not weights.any():
                    continue  # an eval batch's padding row repeats a real one at weight 0
                np.testing.assert_array_equal(
                    weights, _expected_weights(len(prompt), len(by_prompt[prompt]), int(at.sum()))
                )
                assert tok.decode(batch["y"][r][at][weights == 1].tolist()) == by_prompt[prompt] + tok.eos_token
                checked += 1
    assert checked >= 24


def test_chat_weights_count_only_assistant_turns(tmp_path):
    chats = [
        {
            "messages": [
                {"role": "system", "content": "You add numbers."},
                {"role": "user", "content": f"{a}+1"},
                {"role": "assistant", "content": str(a + 1)},
                {"role": "user", "content": "and +2?"},
                {"role": "assistant", "content": str(a + 3)},
            ]
        }
        for a in range(30)
    ]
    _jsonl(tmp_path / "chat.jsonl", chats)
    tok = load_tokenizer(TOKENIZER)
    source = _source(
        tmp_path,
        files="chat.jsonl",
        test_fraction=0.1,
        messages_field="messages",
        batch_size=6,
        seq_len=96,
        prefetch=0,
    )
    replies = {str(a + 1) + "<|im_end|>\n" + str(a + 3) + "<|im_end|>\n" for a in range(30)}
    for step in range(4):
        batch = source.train_batch(step)
        for r in range(len(batch["x"])):
            weighted = batch["y"][r][batch["weight"][r] == 1].tolist()
            assert tok.decode(weighted) in replies or "".join(tok.decode([t]) for t in weighted) in replies
            pad = batch["y"][r] == tok.pad_id
            assert pad.any() and not batch["weight"][r][pad].any()
            unweighted = tok.decode(batch["y"][r][(batch["weight"][r] == 0) & ~pad].tolist())
            assert "You add numbers." in unweighted and "and +2?" in unweighted


@pytest.mark.parametrize("pack", [False, True])
def test_a_resumed_source_gives_the_same_batch_as_one_that_got_there_straight(tmp_path, pack):
    _documents(tmp_path, n=300)
    data = dict(files="train.jsonl", test_fraction=0.1, batch_size=8, seq_len=20, pack=pack)
    straight = _source(tmp_path, **data, prefetch=3)
    walked = [straight.train_batch(s) for s in range(60)]  # past an epoch boundary
    close_source(straight)
    for s in (1, 17, 59):
        resumed = _source(tmp_path, **data, prefetch=3)  # a new process's source, asked first for step s - 1
        for step in (s - 1, s):
            again = resumed.train_batch(step)
            assert again.keys() == walked[step].keys()
            for key in again:
                assert again[key].dtype == walked[step][key].dtype
                np.testing.assert_array_equal(again[key], walked[step][key])
        close_source(resumed)
    unprefetched = _source(tmp_path, **data, prefetch=0)
    for key, value in unprefetched.train_batch(33).items():
        np.testing.assert_array_equal(value, walked[33][key])


def test_packed_rows_keep_documents_apart(tmp_path):
    _documents(tmp_path, n=50)
    source = _source(tmp_path, files="train.jsonl", test_fraction=0.1, batch_size=4, seq_len=24, pack=True, prefetch=0)
    batch = source.train_batch(0)
    for r in range(4):
        segments, positions = batch["segments"][r], batch["positions"][r]
        assert segments.max() >= 2  # several documents share the row
        for number in set(segments.tolist()) - {0}:
            at = np.flatnonzero(segments == number)
            np.testing.assert_array_equal(positions[at], np.arange(len(at)))  # positions restart per document
            assert np.all(np.diff(at) == 1)  # a document is contiguous
