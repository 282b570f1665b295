"""Corpora on disk as random-access records: every format, globs, locate(), and bad data named precisely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expspec.compiler.content_hash import content_digest
from expspec.runtime.data.base import DataError
from expspec.runtime.data.corpus import FORMATS, Records, detect_format, expand_files, open_records

TEXT = {"data.text_field": "text"}
PAIRS = {"data.prompt_field": "prompt", "data.completion_field": "completion"}
CHAT = {"data.messages_field": "messages"}


def _open(tmp_path: Path, files: list[Path], fmt: str | None = None, **kwargs: Any) -> Records:
    kwargs.setdefault("fields", TEXT)
    kwargs.setdefault("sample_by", "line")
    fmt = fmt or detect_format(files, "data.files")
    return open_records(files, fmt, cache=tmp_path / "cache", key="data.files", **kwargs)


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _texts(records: Records, field: str = "text") -> list[str]:
    return [row[field] for row in records.rows(np.arange(len(records)), [field])]


def _docs(prefix: str, n: int) -> list[dict[str, str]]:
    return [{"text": f"{prefix} {i}", "other": str(i)} for i in range(n)]


# ---- each format ------------------------------------------------------------------------------


def test_jsonl_files_in_order_with_locate(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", _docs("a", 3))
    b = _jsonl(tmp_path / "b.jsonl", _docs("b", 2))
    records = _open(tmp_path, [b, a])
    assert len(records) == 5
    assert records.files == (b, a)
    assert _texts(records) == ["b 0", "b 1", "a 0", "a 1", "a 2"]
    # Any subset, any order, repeats allowed.
    assert [r["text"] for r in records.rows(np.array([4, 0, 4, 2]), ["text"])] == ["a 2", "b 0", "a 2", "a 0"]
    assert records.locate(0) == (b, 1)
    assert records.locate(1) == (b, 2)
    assert records.locate(2) == (a, 1)
    assert records.locate(4) == (a, 3)
    with pytest.raises(IndexError):
        records.rows(np.array([5]), ["text"])


def test_a_json_array_file_reads_as_records(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(_docs("j", 3), indent=2))
    assert _texts(_open(tmp_path, [path])) == ["j 0", "j 1", "j 2"]


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["1+1=", "2+2="], "completion": ["2", "4"]}), path)
    records = _open(tmp_path, [path], fields=PAIRS)
    assert records.rows(np.array([1]), ["prompt", "completion"]) == [{"prompt": "2+2=", "completion": "4"}]
    assert records.files == (path,)


@pytest.mark.parametrize("writer", [pa.ipc.new_stream, pa.ipc.new_file], ids=["stream", "file"])
def test_arrow_stream_and_file_formats(tmp_path, writer):
    path = tmp_path / "d.arrow"
    table = pa.table({"text": ["x", "y", "z"]})
    with pa.OSFile(str(path), "wb") as sink, writer(sink, table.schema) as out:
        out.write_table(table)
    records = _open(tmp_path, [path])
    assert _texts(records) == ["x", "y", "z"]
    assert records.files == (path,)


@pytest.mark.parametrize(
    ("sample_by", "expected"),
    [
        ("line", ["line one", "line two", "", "para two"]),
        ("paragraph", ["line one\nline two", "para two\n"]),
        ("document", ["line one\nline two\n\npara two\n"]),
    ],
)
def test_plain_text_sample_by(tmp_path, sample_by, expected):
    path = tmp_path / "t.txt"
    path.write_text("line one\nline two\n\npara two\n")
    # Whatever name the text field has, plain text maps it onto the single field.
    records = _open(tmp_path, [path], sample_by=sample_by, fields={"data.text_field": "body"})
    assert _texts(records, "body") == expected


def test_plain_text_cannot_hold_prompt_completion_or_chat(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello\n")
    for fields in (PAIRS, CHAT):
        with pytest.raises(DataError, match=r"^data\.\w+_field: plain text files hold only text"):
            _open(tmp_path, [path], fields=fields)


def _save(folder: Path, columns: dict[str, list[Any]], shards: int = 2) -> Path:
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset.from_dict(columns).save_to_disk(str(folder), num_shards=shards)
    return folder


def test_saved_folder_files_are_its_data_shards(tmp_path):
    folder = _save(tmp_path / "saved", {"text": [f"s {i}" for i in range(6)]})
    records = _open(tmp_path, [folder])
    assert detect_format([folder], "data.files") == "saved"
    assert _texts(records) == [f"s {i}" for i in range(6)]
    assert records.files == (folder / "data-00000-of-00002.arrow", folder / "data-00001-of-00002.arrow")
    assert records.locate(4) == (folder, 5)  # numbered as the user's load_from_disk(folder)[4]


def test_saved_folder_files_ignore_its_state_json(tmp_path):
    folder = _save(tmp_path / "saved", {"text": ["a", "b", "c"]})
    before = _open(tmp_path, [folder]).files
    digest = content_digest(before, cache=None)
    state = json.loads((folder / "state.json").read_text())
    state["_fingerprint"] = "0123456789abcdef"
    (folder / "state.json").write_text(json.dumps(state))
    info = folder / "dataset_info.json"
    info.write_text(info.read_text() + "\n")
    after = _open(tmp_path, [folder]).files
    assert after == before
    assert all(path.suffix == ".arrow" for path in after)
    assert content_digest(after, cache=None) == digest


def test_a_folder_of_splits_names_them(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    split = datasets.Dataset.from_dict({"text": ["a"]})
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"^data\.files: '.*dd' holds several splits \(test, train\); name one"):
        detect_format([tmp_path / "dd"], "data.files")


def _array_record(path: Path, records: list[bytes]) -> Path:
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")
    for record in records:
        writer.write(record)
    writer.close()
    return path


def test_array_record_json_objects_and_plain_documents(tmp_path):
    objects = _array_record(
        tmp_path / "a.array_record",
        [json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}).encode() for i in range(3)],
    )
    records = _open(tmp_path, [objects], fields=PAIRS)
    assert records.rows(np.array([2, 0]), ["completion", "prompt"]) == [
        {"completion": "c2", "prompt": "p2"},
        {"completion": "c0", "prompt": "p0"},
    ]
    plain = _array_record(tmp_path / "b.array_record", ["été".encode(), b"[1, 2]", b'{"text": "json"}'])
    records = _open(tmp_path, [plain])
    assert _texts(records) == ["été", "[1, 2]", "json"]
    assert records.locate(2) == (plain, 3)


def test_array_record_validation_is_remembered_by_file_identity(tmp_path):
    path = _array_record(tmp_path / "a.array_record", [b'{"text": "ok"}'] * 3)
    _open(tmp_path, [path])
    markers = list((tmp_path / "cache" / "checked").glob("*.ok"))
    assert len(markers) == 1
    _open(tmp_path, [path])
    assert list((tmp_path / "cache" / "checked").glob("*.ok")) == markers
    _open(tmp_path, [path], fields={"data.text_field": "text"}, rehash=True)


@pytest.mark.parametrize(
    ("payload", "fields", "message"),
    [
        (b"\xff\xfe", TEXT, r"^data\.files: record 2 of '.*bad\.array_record' is not UTF-8 text"),
        (b'{"text": oops}', TEXT, r"^data\.files: record 2 of '.*' is not valid JSON"),
        (b'{"other": "x"}', TEXT, r"^data\.text_field: record 2 of '.*' has no 'text'$"),
        (b"plain", PAIRS, r"^data\.prompt_field: record 2 of '.*' has no 'prompt' \(a plain text record"),
        (b'{"text": 3}', TEXT, r"^data\.text_field: record 2 of '.*': 'text' is a number, not a string$"),
    ],
    ids=["utf8", "json", "missing", "plain-for-pairs", "type"],
)
def test_array_record_bad_records_are_named(tmp_path, payload, fields, message):
    good = json.dumps({"text": "t", "prompt": "p", "completion": "c"}).encode()
    path = _array_record(tmp_path / "bad.array_record", [good, payload, good])
    with pytest.raises(DataError, match=message):
        _open(tmp_path, [path], fields=fields)
    assert not (tmp_path / "cache" / "checked").exists()  # a failed check is not remembered


def test_an_unreadable_array_record_file(tmp_path):
    path = tmp_path / "junk.array_record"
    path.write_bytes(b"junk" * 10)
    with pytest.raises(DataError, match=r"^data\.files: '.*junk\.array_record' is not a readable ArrayRecord file"):
        _open(tmp_path, [path])


def _mapped(table: Any) -> bool:
    from datasets.table import ConcatenationTable, MemoryMappedTable

    if isinstance(table, ConcatenationTable):  # a saved dataset's shards, each mapped
        return all(_mapped(block) for row in table.blocks for block in row)
    return isinstance(table, MemoryMappedTable)


def test_every_format_is_read_memory_mapped(tmp_path):

    (tmp_path / "t.txt").write_text("a\nb\n")
    _jsonl(tmp_path / "j.jsonl", _docs("j", 2))
    pq.write_table(pa.table({"text": ["p"]}), tmp_path / "p.parquet")
    _save(tmp_path / "saved", {"text": ["s", "t"]})
    for name in ("t.txt", "j.jsonl", "p.parquet", "saved"):
        records = _open(tmp_path, [tmp_path / name])
        assert all(_mapped(part.dataset.data) for part in records._parts), name


# ---- chat records -----------------------------------------------------------------------------


def test_chat_records(tmp_path):
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    path = _jsonl(tmp_path / "c.jsonl", [{"messages": chat}, {"messages": chat[:1]}])
    records = _open(tmp_path, [path], fields=CHAT)
    assert records.rows(np.array([0]), ["messages"]) == [{"messages": chat}]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not a list", r"'messages' is a string, not a list of \{role, content\} messages"),
        ([{"role": "user"}], r"'messages' message 1 has no string 'content'"),
        ([{"role": "user", "content": ["parts"]}], r"'messages' message 1 has no string 'content'"),
        (["just text"], r"'messages' message 1 is a string, not an object with role and content"),
    ],
    ids=["not-list", "no-content", "content-list", "not-object"],
)
def test_bad_chat_records_are_named(tmp_path, bad, message):
    good = {"messages": [{"role": "user", "content": "hi"}]}
    path = _jsonl(tmp_path / "c.jsonl", [good, good, {"messages": bad}, good])
    with pytest.raises(DataError, match=r"^data\.messages_field: record 3 of '.*c\.jsonl': " + message):
        _open(tmp_path, [path], fields=CHAT)


# ---- globs and lists --------------------------------------------------------------------------


def test_globs_expand_sorted_relative_to_the_spec_folder(tmp_path, monkeypatch):
    spec_dir = tmp_path / "spec [v1]"  # glob characters in the folder name stay literal
    (spec_dir / "data" / "deep").mkdir(parents=True)
    for name in ("b.jsonl", "a.jsonl", "deep/c.jsonl", "notes.txt"):
        _jsonl(spec_dir / "data" / name, _docs(name, 1))
    monkeypatch.chdir(tmp_path)
    data = spec_dir / "data"
    assert expand_files(["data/*.jsonl"], spec_dir, "data.files") == [data / "a.jsonl", data / "b.jsonl"]
    assert expand_files(["data/**/*.jsonl"], spec_dir, "data.files") == [
        data / "a.jsonl",
        data / "b.jsonl",
        data / "deep" / "c.jsonl",
    ]
    # A list keeps its order; duplicates (however spelled) are dropped, the first kept.
    listed = expand_files(["data/b.jsonl", "data/*.jsonl", "./data/b.jsonl", str(data / "a.jsonl")], spec_dir, "k")
    assert listed == [data / "b.jsonl", data / "a.jsonl"]
    # An absolute pattern ignores the spec folder; an existing name with brackets is literal.
    other = tmp_path / "other"
    other.mkdir()
    _jsonl(other / "x[1].jsonl", _docs("x", 1))
    assert expand_files([str(other / "*.jsonl")], spec_dir, "k") == [other / "x[1].jsonl"]
    assert expand_files(["../other/x[1].jsonl"], spec_dir, "k") == [other / "x[1].jsonl"]


@pytest.mark.parametrize("pattern", ["missing.jsonl", "data/*.parquet", "nowhere/**/*.jsonl"])
def test_a_pattern_matching_nothing_is_named(tmp_path, pattern):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=rf"^data\.eval_files: no file matches '{pattern}'$".replace("*", r"\*")):
        expand_files(["data", pattern], tmp_path, "data.eval_files")
    with pytest.raises(DataError, match=r"^data\.files: no files given$"):
        expand_files([], tmp_path, "data.files")


def test_detect_format_by_suffix_and_refusals(tmp_path):
    names = {
        "a.jsonl": "jsonl",
        "a.json": "jsonl",
        "a.parquet": "parquet",
        "a.arrow": "arrow",
        "a.txt": "text",
        "a.text": "text",
        "a.md": "text",
        "a.array_record": "arrayrecord",
        "a.arrayrecord": "arrayrecord",
        "c.array_record-00000-of-00002": "arrayrecord",
    }
    for name, fmt in names.items():
        (tmp_path / name).write_text("")
        assert detect_format([tmp_path / name], "data.files") == fmt
        assert fmt in FORMATS
    (tmp_path / "a.csv").write_text("")
    with pytest.raises(DataError, match=r"^data\.files: cannot tell the format of '.*a\.csv'"):
        detect_format([tmp_path / "a.jsonl", tmp_path / "a.csv"], "data.files")
    with pytest.raises(DataError, match=r"^data\.files: mixed formats: '.*a\.jsonl' is jsonl but '.*a\.txt' is text$"):
        detect_format([tmp_path / "a.jsonl", tmp_path / "a.txt"], "data.files")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"^data\.files: '.*folder' is a folder but not a datasets save_to_disk"):
        detect_format([tmp_path / "folder"], "data.files")
    with pytest.raises(DataError, match=r"^data\.files: '.*folder' is a folder; only format 'saved' reads folders$"):
        _open(tmp_path, [tmp_path / "folder"], fmt="jsonl")
    with pytest.raises(DataError, match=r"^data\.files: unknown format 'csv'"):
        _open(tmp_path, [tmp_path / "a.csv"], fmt="csv")


# ---- bad data, named by key, file and record ----------------------------------------------------


def test_a_field_missing_from_one_file_names_that_file(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", _docs("a", 2))
    b = _jsonl(tmp_path / "b.jsonl", [{"body": "x"}])
    with pytest.raises(DataError, match=r"^data\.text_field: no field 'text' in '.*b\.jsonl' \(its fields: body\)$"):
        _open(tmp_path, [a, b])


def test_a_field_absent_from_one_record_names_the_record(tmp_path):
    path = _jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}] * 3 + [{"prompt": "p"}])
    with pytest.raises(DataError, match=r"^data\.completion_field: record 4 of '.*a\.jsonl' has no 'completion'$"):
        _open(tmp_path, [path], fields=PAIRS)
    nulls = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), nulls)
    with pytest.raises(DataError, match=r"^data\.text_field: record 2 of '.*n\.parquet' has no 'text'$"):
        _open(tmp_path, [nulls])


def test_a_value_that_is_not_text_names_the_record(tmp_path):
    mixed = _jsonl(tmp_path / "m.jsonl", [{"text": "a"}, {"text": "b"}, {"text": 3}])
    with pytest.raises(
        DataError, match=r"^data\.text_field: record 3 of '.*m\.jsonl': 'text' is a number, not a string$"
    ):
        _open(tmp_path, [mixed])
    numbers = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numbers)
    with pytest.raises(DataError, match=r"^data\.text_field: record 1 of '.*n\.parquet': 'text' is a number"):
        _open(tmp_path, [numbers])


def test_an_empty_corpus_is_refused(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(DataError, match=r"^data\.files: no records in the 2 files \(first '.*e\.jsonl'\)$"):
        _open(tmp_path, [tmp_path / "e.jsonl", tmp_path / "blank.jsonl"])
    with pytest.raises(DataError, match=r"^data\.files: no records in '.*e\.txt'$"):
        _open(tmp_path, [tmp_path / "e.txt"])
    # An empty file among others is fine, and still part of the content.
    full = _jsonl(tmp_path / "f.jsonl", _docs("f", 2))
    records = _open(tmp_path, [tmp_path / "e.jsonl", full])
    assert records.files == (tmp_path / "e.jsonl", full)
    assert records.locate(0) == (full, 1)


def test_a_json_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": oops}\n{"text": "d"}\n')
    with pytest.raises(DataError, match=r"^data\.files: line 4 of '.*bad\.jsonl' is not valid JSON Lines \(Expecting"):
        _open(tmp_path, [path])
    pretty = tmp_path / "bad.json"
    pretty.write_text('[\n  {"text": "a"},\n  {"text": }\n]\n')
    with pytest.raises(DataError, match=r"^data\.files: line 3 of '.*bad\.json' is not valid JSON Lines"):
        _open(tmp_path, [pretty])


def test_text_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"ok\nstill ok\n" + "café\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"^data\.files: line 3 of '.*latin\.txt' is not UTF-8 text$"):
        _open(tmp_path, [path])


def test_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet at all")
    with pytest.raises(DataError, match=r"^data\.files: cannot read '.*fake\.parquet' as Parquet: ") as caught:
        _open(tmp_path, [path])
    assert "\n" not in str(caught.value)


def test_reading_leaves_stderr_clean(tmp_path, capfd):
    _jsonl(tmp_path / "a.jsonl", _docs("a", 50))
    _open(tmp_path, [tmp_path / "a.jsonl"])
    with pytest.raises(DataError):
        _open(tmp_path, [_jsonl(tmp_path / "b.jsonl", ["not an object"])])
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_rehash_rebuilds_a_conversion_the_file_identity_hid(tmp_path):
    """The same contract as the fingerprint: an edit that keeps size and mtime needs rehash."""
    path = _jsonl(tmp_path / "a.jsonl", [{"text": "aaaa"}])
    os.utime(path, ns=(7_000_000_000, 7_000_000_000))
    assert _texts(_open(tmp_path, [path])) == ["aaaa"]
    _jsonl(path, [{"text": "bbbb"}])
    os.utime(path, ns=(7_000_000_000, 7_000_000_000))
    assert _texts(_open(tmp_path, [path])) == ["aaaa"]
    assert _texts(_open(tmp_path, [path], rehash=True)) == ["bbbb"]


def _rss_kib() -> dict[str, int]:
    with open("/proc/self/status") as status:
        return {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("RssAnon", "RssFile"))}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's per-process memory counters")
def test_reading_a_whole_epoch_does_not_grow_memory(tmp_path):
    """Anonymous memory stays flat; mapped pages the epoch touched are given back on request."""
    line = json.dumps({"text": "word " * 200}) + "\n"
    corpus_kib = 8 * 1024
    path = tmp_path / "c.jsonl"
    path.write_text(line * (corpus_kib * 1024 // len(line)))
    records = _open(tmp_path, [path])
    records.rows(np.arange(8), ["text"])  # warm the code paths before measuring
    before = _rss_kib()
    order = np.random.default_rng(0).permutation(len(records))
    for start in range(0, len(order), 64):
        records.rows(order[start : start + 64], ["text"])
    after = _rss_kib()
    assert after["RssAnon"] - before["RssAnon"] < corpus_kib // 4, (before, after)
    assert after["RssFile"] - before["RssFile"] > corpus_kib // 2, (before, after)  # read through the mapping
    assert records.release_pages() > 0
    released = _rss_kib()
    assert released["RssFile"] - before["RssFile"] < corpus_kib // 4, (before, released)
    assert released["RssAnon"] - before["RssAnon"] < corpus_kib // 4, (before, released)
