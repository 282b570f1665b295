"""Append-only JSON-lines files survive a kill between any two bytes."""

from __future__ import annotations

import json

import pytest

from exp.runtime.records import JsonLines, read_jsonl, repair_tail


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
