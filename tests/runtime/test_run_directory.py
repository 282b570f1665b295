"""Run directories: refusing another experiment, accepting operational changes, one writer."""

from __future__ import annotations

import json
import signal

from tests.runtime.runs import DIGITS, exp, kill, run_json, snapshot, start, wait_for_step

ARGS = (str(DIGITS), "train.steps=20", "checkpoint.every_steps=10", "train.eval_every=0")


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_changed_learning_rate_is_refused_and_nothing_changes(tmp_path):
    run_json(*ARGS, "--stop-at", "10", "--run-dir", str(tmp_path))
    before = snapshot(tmp_path)
    result = exp("run", *ARGS, "optimizer.learning_rate=0.5", "--run-dir", str(tmp_path))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "holds a run of trajectory" in line and "Traceback" not in result.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["fingerprints"]["trajectory"][:12] in line
    assert snapshot(tmp_path) == before


def test_changed_log_every_resumes_and_is_recorded(tmp_path):
    run_json(*ARGS, "--stop-at", "10", "--run-dir", str(tmp_path))
    resumed = run_json(*ARGS, "train.log_every=3", "--run-dir", str(tmp_path))
    assert resumed["outcome"] == "finished" and resumed["step"] == 20
    changes = [e for e in _events(tmp_path) if e["event"] == "operational_change"]
    assert changes and changes[0]["changes"]["train.log_every"] == [10, 3]
    assert [e["event"] for e in _events(tmp_path) if e["event"] in ("start", "resume")] == ["start", "resume"]


def test_a_finished_run_says_so_and_does_not_train(tmp_path):
    first = run_json(*ARGS, "--run-dir", str(tmp_path))
    ledger_before = (tmp_path / "ledger.jsonl").read_bytes()
    again = exp("run", *ARGS, "--run-dir", str(tmp_path))
    assert again.returncode == 0 and "already complete" in again.stderr
    assert (tmp_path / "ledger.jsonl").read_bytes() == ledger_before
    assert first["outcome"] == "finished"


def test_second_process_refuses_and_a_dead_holder_is_taken_over(tmp_path):
    args = (str(DIGITS), "train.steps=100000", "checkpoint.every_steps=100000", "train.eval_every=0")
    first = start(*args, "--run-dir", str(tmp_path))
    try:
        wait_for_step(tmp_path, 3, first)
        second = exp("run", *args, "--run-dir", str(tmp_path))
        assert second.returncode == 2
        assert f"in use by pid {first.pid}" in second.stderr
    finally:
        assert kill(first, signal.SIGKILL) == -signal.SIGKILL
    third = run_json(*args, "--stop-at", "5", "--run-dir", str(tmp_path))
    assert third["outcome"] == "stopped"
    takeovers = [e for e in _events(tmp_path) if e["event"] == "lock_takeover"]
    assert takeovers and takeovers[0]["previous"]["pid"] == first.pid


def test_changed_data_is_refused(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    args = (
        str(DIGITS),
        f'data={{kind="text_chars", path="{corpus}", seq_len=16, batch_size=4}}',
        'model={kind="transformer", layers=1, d_model=16, heads=2, d_ff=32, max_len=16}',
        "train.steps=6",
        "checkpoint.every_steps=2",
        "train.eval_every=0",
    )
    run_json(*args, "--stop-at", "2", "--run-dir", str(tmp_path / "run"))
    corpus.write_text(corpus.read_text().replace("lazy", "LAZY"))
    result = exp("run", *args, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "the data changed since this run started" in result.stderr and "Traceback" not in result.stderr


def test_a_corrupt_checkpoint_is_never_trained_on(tmp_path):
    run_json(*ARGS, "checkpoint.async=false", "--stop-at", "10", "--run-dir", str(tmp_path))
    data_files = sorted(
        (p for p in (tmp_path / "checkpoints" / "10" / "state").rglob("*") if p.is_file() and p.stat().st_size > 4096),
        key=lambda p: p.stat().st_size,
    )
    victim = data_files[-1]
    raw = bytearray(victim.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(64)
    victim.write_bytes(bytes(raw))
    ledger_before = (tmp_path / "ledger.jsonl").read_bytes()
    result = exp("run", *ARGS, "checkpoint.async=false", "--run-dir", str(tmp_path))
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.stderr
    assert (tmp_path / "ledger.jsonl").read_bytes() == ledger_before  # not one step trained
    assert [e["event"] for e in _events(tmp_path)][-1] == "error"


def test_retention_keeps_the_latest_and_every_kth_checkpoint(tmp_path):
    args = (
        str(DIGITS),
        "train.steps=60",
        "checkpoint.every_steps=10",
        "checkpoint.keep_last=1",
        "checkpoint.keep_every=20",
        "train.eval_every=0",
    )
    run_json(*args, "--run-dir", str(tmp_path))
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [20, 40, 60]
