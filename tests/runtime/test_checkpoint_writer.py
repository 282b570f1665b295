"""Checkpoints written by a writer process are the checkpoints the training process would write.

`checkpoint.writer = "process"` moves Orbax's saves into a process beside the
run (runtime/engine/checkpoint_writer.py). These tests run real `exp run`
processes and real signals: the same ledger and the same checkpoint bytes as
in-process saves; a SIGKILLed run takes its writer with it and resumes exactly;
a SIGTERM's last save goes through the writer; a writer that dies fails the run
with a recorded reason, and the next attempt resumes from what had committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from expspec.compiler import plan_spec
from expspec.runtime.engine.checkpoint_writer import wants_process
from expspec.runtime.processes.cluster import SINGLE, Cluster
from tests.runtime.runs import (
    DIGITS,
    beginnings,
    checkpoint_hashes,
    events,
    exp,
    kill,
    ledger,
    run_json,
    start,
    wait_for_commit,
)

SMALL = ["model.hidden=[16]", "train.eval_every=0", "train.log_every=1"]


def _run(run_dir: Path, writer: str, *extra: str) -> list[str]:
    return [str(DIGITS), "--run-dir", str(run_dir), *SMALL, f"checkpoint.writer={writer}", *extra]


def _writers_of(pid: int) -> list[int]:
    """The training process's writer children (any child running the checkpoint worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"checkpoint_worker" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _saved_meta(run_dir: Path) -> dict[int, dict]:
    folder = run_dir / "checkpoints"
    return {
        int(p.name): json.loads((p / "meta" / "metadata").read_text()) for p in folder.iterdir() if p.name.isdigit()
    }


def test_the_writer_process_saves_what_the_training_process_would(tmp_path):
    steps = ["train.steps=24", "checkpoint.every_steps=4", "checkpoint.keep_last=10"]
    by_process = run_json(*_run(tmp_path / "process", "process", *steps))
    by_thread = run_json(*_run(tmp_path / "thread", "thread", *steps))
    assert by_process["full_hash"] == by_thread["full_hash"]
    hashes = checkpoint_hashes(tmp_path / "process")
    assert sorted(hashes) == [4, 8, 12, 16, 20, 24]
    assert hashes == checkpoint_hashes(tmp_path / "thread")
    # The record inside each checkpoint (written by the writer) carries the hash the ledger has.
    meta = _saved_meta(tmp_path / "process")
    assert {step: m["full_hash"] for step, m in meta.items()} == hashes

    # Alike but for the spec's fingerprint, which covers the operational `writer` field too.
    def without_spec(saved: dict[int, dict]) -> dict[int, dict]:
        return {step: {k: v for k, v in m.items() if k != "spec"} for step, m in saved.items()}

    assert without_spec(meta) == without_spec(_saved_meta(tmp_path / "thread"))
    # What the writer saved restores to the hash it recorded: the audit's integrity check reads every one.
    audit = exp("audit", str(tmp_path / "process"))
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_sigkilled_run_takes_its_writer_along_and_resumes_exactly(tmp_path):
    reference = run_json(*_run(tmp_path / "ref", "thread", "train.steps=400", "checkpoint.every_steps=20"))
    run_dir = tmp_path / "run"
    proc = start(*_run(run_dir, "process", "train.steps=400", "checkpoint.every_steps=20"))
    wait_for_commit(run_dir, 40, proc)
    writers = _writers_of(proc.pid)
    assert len(writers) == 1, "the run saves through one writer process"
    assert kill(proc, signal.SIGKILL) == -signal.SIGKILL
    assert _wait_gone(writers[0]), "the writer outlived the run it wrote for"
    resumed = run_json(*_run(run_dir, "process", "train.steps=400", "checkpoint.every_steps=20"))
    assert beginnings(run_dir)[-1][0] == "resume"
    assert resumed["full_hash"] == reference["full_hash"]
    assert ledger(run_dir) == ledger(tmp_path / "ref")


@pytest.mark.slow  # ~8 s: the default suite keeps the writer's equality and SIGKILL tests
def test_a_sigterm_saves_its_last_step_through_the_writer(tmp_path):
    run_dir = tmp_path / "run"
    args = _run(run_dir, "process", "train.steps=5000", "checkpoint.every_steps=50")
    proc = start(*args)
    wait_for_commit(run_dir, 50, proc)
    writers = _writers_of(proc.pid)
    assert kill(proc, signal.SIGTERM) != 0
    stopped = [e for e in events(run_dir) if e["event"] == "preempted"]
    assert len(stopped) == 1
    step = stopped[0]["step"]
    assert checkpoint_hashes(run_dir)[step] == stopped[0]["full_hash"], "the stop's own step was saved and ledgered"
    assert all(_wait_gone(pid, 5) for pid in writers)
    resumed = exp("run", *args, "--stop-at", str(step + 10), "--json", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert beginnings(run_dir)[-1] == ("resume", step)


@pytest.mark.slow  # ~7 s
def test_a_writer_that_dies_fails_the_run_on_record_and_the_next_attempt_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = _run(run_dir, "process", "train.steps=5000", "checkpoint.every_steps=25")
    proc = start(*args)
    committed = wait_for_commit(run_dir, 50, proc)
    (writer,) = _writers_of(proc.pid)
    os.kill(writer, signal.SIGKILL)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run went on without its checkpoint writer")
    assert proc.returncode == 3, stderr
    assert "checkpoint writer process exited" in stderr
    errors = [e for e in events(run_dir) if e["event"] == "error"]
    assert errors and "checkpoint writer process exited" in errors[-1]["error"]
    resumed = exp("run", *args, "--stop-at", str(committed + 5), "--json", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert beginnings(run_dir)[-1][0] == "resume"
    assert beginnings(run_dir)[-1][1] >= committed


@pytest.mark.parametrize(
    "overrides, cluster, expected",
    [
        (["train.steps=2000"], SINGLE, True),  # 20 saves of 100 steps
        (["train.steps=900", "checkpoint.every_steps=10"], SINGLE, False),  # short: the start is not won back
        (["train.steps=2000", "checkpoint.every_steps=500"], SINGLE, False),  # 4 saves
        (["train.steps=2000", "checkpoint.async=false"], SINGLE, False),  # a synchronous save waits anyway
        (["train.steps=2000"], Cluster(0, 2), False),  # collective saves
        (["train.steps=2000", "checkpoint.every_steps=0", "checkpoint.every_seconds=60"], SINGLE, False),
        (["train.steps=20", "checkpoint.writer=process"], SINGLE, True),
        (["train.steps=2000", "checkpoint.writer=thread"], SINGLE, False),
        (["train.steps=20", "checkpoint.writer=process"], Cluster(1, 2), False),
    ],
)
def test_auto_takes_the_writer_process_where_it_pays(overrides, cluster, expected):
    plan = plan_spec(DIGITS, overrides)
    assert wants_process(plan.checkpoint, cluster, plan.spec.train.steps) is expected
