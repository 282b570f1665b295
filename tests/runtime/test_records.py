"""Append-only JSON-lines files survive a kill between any two bytes."""

from __future__ import annotations

import json

import pytest

from expspec.runtime.runs.records import DamagedRecord, JsonLines, iter_records, read_jsonl, repair_tail


@pytest.mark.parametrize("cut", [1, 5, 17])
def test_a_torn_last_line_is_cut_and_earlier_lines_kept(tmp_path, cut):
    path = tmp_path / "ledger.jsonl"
    log = JsonLines(path)
    for step in range(3):
        log.write({"step": step, "hash": "ab" * 8})
    log.close()
    whole = path.read_bytes()
    torn = json.dumps({"step": 3, "hash": "cd" * 8}).encode()[:cut]
    path.write_bytes(whole + torn)
    assert [r["step"] for r in read_jsonl(path)] == [0, 1, 2]  # readers skip the torn tail
    assert repair_tail(path) == len(torn)
    assert path.read_bytes() == whole
    again = JsonLines(path)  # reopening repairs too, then appends after the last whole line
    again.write({"step": 3})
    again.close()
    assert [r["step"] for r in read_jsonl(path)] == [0, 1, 2, 3]


def test_repair_leaves_whole_files_alone(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n')
    assert repair_tail(path) == 0 and path.read_text() == '{"a": 1}\n'
    assert repair_tail(tmp_path / "missing.jsonl") == 0
    torn_only = tmp_path / "torn.jsonl"
    torn_only.write_text('{"a"')
    assert repair_tail(torn_only) == 4 and torn_only.read_text() == ""


def test_the_reader_numbers_complete_lines_and_skips_a_torn_last_one(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b'{"step": 0}\n{"step": 1}\n{"step": 2, "ha')
    assert [(number, record["step"]) for number, record in iter_records(path)] == [(1, 0), (2, 1)]
    assert [r["step"] for r in read_jsonl(path)] == [0, 1]
    path.write_bytes(b'{"step": 0}\n\x00\x00\x00')  # a torn last line is skipped whatever it holds
    assert read_jsonl(path) == [{"step": 0}]
    assert list(iter_records(tmp_path / "missing.jsonl")) == []


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"garbage", "not JSON"),
        (b"\x00" * 40, "NUL bytes"),
        (b'{"step": 1, "params": "ab', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"step": 1, "name": "\xff\xfe"}', "not UTF-8"),
        (b"", "not JSON"),
    ],
    ids=["garbage", "nul", "cut-mid-file", "not-an-object", "not-utf8", "empty"],
)
def test_a_damaged_complete_line_is_reported_with_its_file_and_number(tmp_path, line, reason):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b'{"step": 0}\n' + line + b'\n{"step": 2}\n{"step": 3, "torn')
    with pytest.raises(DamagedRecord) as caught:
        read_jsonl(path)
    damaged = caught.value
    assert (damaged.path, damaged.line) == (path, 2)
    assert str(damaged).startswith(f"{path}:2: ") and reason in str(damaged)
    assert str(damaged).isprintable() and "\n" not in str(damaged)
