"""The run directory's one owner: records of every kind written and read through it."""

from __future__ import annotations

from pathlib import Path

from expspec.runtime.runs.records import JsonLines, iter_records, records_backwards
from expspec.runtime.runs.run_files import ENDS, Event, Kind, RunFiles, attempt_outcome, attempts, process_file


def _write_all(files: RunFiles) -> list[dict]:
    ledger = [
        {"kind": Kind.LEAVES, "params": ["w"], "opt": ["mu/w"]},
        {"kind": Kind.STEP, "step": 1, "params": "a", "opt": "b", "leaves": "c", "attempt": 0},
        {"kind": Kind.CHECKPOINT, "step": 1, "full_hash": "d", "attempt": 0},
    ]
    out = JsonLines(files.ledger)
    for record in ledger:
        out.write(record)
    out.close()
    events = JsonLines(files.events)
    for number, name in enumerate(Event):
        events.write({"event": name, "step": number})
    events.close()
    return ledger


def test_every_record_kind_reads_back_through_the_one_reader_and_a_torn_line_is_skipped(tmp_path: Path):
    files = RunFiles(tmp_path)
    ledger = _write_all(files)
    with files.ledger.open("ab") as handle:
        handle.write(b'{"kind":"step","step":2,"par')  # a writer killed mid-line
    read = [record for _, record in iter_records(files.ledger)]
    assert read == ledger
    assert [r["kind"] for r in read] == [Kind.LEAVES, Kind.STEP, Kind.CHECKPOINT] == ["leaves", "step", "checkpoint"]
    assert [r["kind"] for r in records_backwards(files.ledger)] == ["checkpoint", "step", "leaves"]
    events = [record["event"] for _, record in iter_records(files.events)]
    assert events == [e.value for e in Event]
    assert set(files.record_files()) >= {files.events, files.ledger, files.metrics}


def test_paths_and_per_process_files(tmp_path: Path):
    files = RunFiles(tmp_path)
    assert files.ledger.name == "ledger.jsonl" and files.plan.name == "plan.json"
    assert process_file("ledger.jsonl", 0) == "ledger.jsonl"
    assert process_file("ledger.jsonl", 2) == "ledger.process-2.jsonl"
    assert process_file("LOCK", 1) == "LOCK.process-1"
    JsonLines(files.own("ledger.jsonl", 1)).close()
    assert files.process_ledgers() == [tmp_path / "ledger.process-1.jsonl"]
    assert not files.is_run()
    files.lock.touch()
    assert files.is_run() and files.locks() == [files.lock]


def test_attempt_outcome_is_decided_by_the_newest_begin_or_end():
    def outcome(*names: str) -> str:
        return attempt_outcome(reversed([{"event": n} for n in names])).how

    assert outcome() == "none"
    assert outcome("environment_change") == "none"
    assert outcome("start") == "unended"
    assert outcome("start", "checkpoint_save", "throttle") == "unended"
    for end in ENDS:
        assert outcome("start", "checkpoint_save", end, "checkpoint_cleanup") == end
    assert outcome("start", "preempted", "resume", "checkpoint_save") == "unended"
    assert outcome("start", "error", "resume", "finished") == "finished"
    found = attempt_outcome([{"event": "preempted", "signal": "SIGTERM"}, {"event": "start"}])
    assert found.event == {"event": "preempted", "signal": "SIGTERM"}
    assert attempts([{"event": "start"}, {"event": "error"}, {"event": "resume"}]) == 2
