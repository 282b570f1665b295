"""`exp launch`: refusals before anything starts, and real two-process clusters."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import JAX_FAMILY, imported_modules
from tests.conftest import ROOT, run_exp
from tests.runtime.runs import DIGITS, EXP

CLUSTER = ("--processes", "2", "--devices-per-process", "2")
SMALL = ("mesh.data=-1", "train.steps=30", "checkpoint.every_steps=10", "train.eval_every=0")
"""Digits on 2 x 2 virtual devices: seconds of training after start-up."""


def launch(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [EXP, "launch", *CLUSTER, str(DIGITS), *SMALL, "--run-dir", str(run_dir), "--json", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, dict | None, str]:
    """Exit code, process 0's JSON summary (if it printed one) and the launcher's stderr."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")] if path.exists() else []


def steps(ledger: Path) -> dict[int, tuple[str, str, str]]:
    return {r["step"]: (r["params"], r["opt"], r["leaves"]) for r in records(ledger) if r["kind"] == "step"}


def wait_until(condition, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("option", "value"),
    [("--processes", "0"), ("--devices-per-process", "0"), ("--stop-at", "0"), ("--processes", "-3")],
)
def test_bad_sizes_are_refused_before_anything_starts(tmp_path, option, value):
    args = ["--processes", "2", option, value] if option != "--processes" else [option, value]
    result = run_exp("launch", *args, str(DIGITS), "mesh.data=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{option}: must be at least 1 (got {value})"
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_spec_is_refused_in_one_line_per_problem(tmp_path):
    result = run_exp("launch", "--processes", "2", str(DIGITS), "optimizer.learning_rate=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert "optimizer.learning_rate" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_another_experiments_run_directory_is_left_untouched(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = run_exp("plan", str(DIGITS), "--json", "optimizer.learning_rate=0.5")
    assert plan.returncode == 0, plan.stderr
    (run_dir / "plan.json").write_text(plan.stdout)
    result = run_exp("launch", "--processes", "2", str(DIGITS), "mesh.data=-1", "--run-dir", str(run_dir))
    assert result.returncode == 2 and "trajectory" in result.stderr
    assert [p.name for p in run_dir.iterdir()] == ["plan.json"]


def test_launch_help_imports_no_jax():
    modules = imported_modules("-m", "expspec", "launch", "--help", shows="--devices-per-process")
    assert not set(JAX_FAMILY) & modules


def assert_finished(run_dir: Path, proc: subprocess.Popen[str]) -> str:
    """Check a launch that ran to the end; its full hash."""
    code, summary, err = finish(proc)
    assert code == 0, err
    assert summary is not None and summary["outcome"] == "finished" and summary["step"] == 30
    finished = [e for e in records(run_dir / "events.jsonl") if e["event"] == "finished"]
    assert finished[-1]["full_hash"] == summary["full_hash"]
    info = json.loads((run_dir / "launch.json").read_text())
    assert (info["processes"], info["devices_per_process"], info["returncodes"]) == (2, 2, [0, 0])
    assert not any(alive(pid) for pid in info["pids"])
    # Process 1 keeps its own ledger and agrees with process 0 at every step both recorded (a
    # killed attempt's last records may be in one ledger only, depending on who died first).
    own, shared = (steps(run_dir / name) for name in ("ledger.process-1.jsonl", "ledger.jsonl"))
    both = own.keys() & shared.keys()
    assert max(own) == max(shared) == 30 and len(both) > 1
    assert {k: own[k] for k in both} == {k: shared[k] for k in both}
    assert (run_dir / "launch" / "process-1.out").exists()
    return summary["full_hash"]


def test_a_killed_member_stops_the_cluster_and_a_relaunch_ends_like_an_uninterrupted_launch(tmp_path):
    # The uninterrupted launch runs alongside: one start-up's worth of waiting for both.
    reference = launch(tmp_path / "reference")
    run_dir = tmp_path / "run"
    proc = launch(run_dir)

    def past_a_checkpoint() -> bool:
        ledger = records(run_dir / "ledger.jsonl")
        saved = [r["step"] for r in ledger if r["kind"] == "checkpoint"]
        return bool(saved) and max(r["step"] for r in ledger if r["kind"] == "step") > min(saved)

    wait_until(past_a_checkpoint, proc)
    pids = json.loads((run_dir / "launch.json").read_text())["pids"]
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    code, _, err = finish(proc, timeout=60)
    assert time.monotonic() - killed < 20
    assert code == 3
    assert "process 1 was killed by SIGKILL" in err and "relaunch the same command" in err
    assert not any(alive(pid) for pid in pids)

    expected = assert_finished(tmp_path / "reference", reference)
    assert assert_finished(run_dir, launch(run_dir)) == expected
    assert any(e["event"] == "resume" for e in records(run_dir / "events.jsonl"))


def test_sigterm_to_the_launcher_preempts_every_member_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc = launch(run_dir)
    wait_until(lambda: any(r["kind"] == "step" for r in records(run_dir / "ledger.jsonl")), proc)
    proc.send_signal(signal.SIGTERM)
    code, summary, err = finish(proc)
    assert code == 75, err
    assert summary["outcome"] == "preempted" and summary["step"] < 30
    assert json.loads((run_dir / "launch.json").read_text())["returncodes"] == [75, 75]
    saved = [r["step"] for r in records(run_dir / "ledger.jsonl") if r["kind"] == "checkpoint"]
    assert summary["step"] in saved  # resuming it is the runtime's business (tests/runtime/test_cluster.py)


def test_a_mesh_that_leaves_devices_out_is_reported_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "new" / "run"
    result = run_exp("launch", *CLUSTER, str(DIGITS), "train.steps=5", "--run-dir", str(run_dir))
    assert result.returncode == 2
    # Both refuse; whichever exits first is reported, the other is stopped.
    assert re.search(r"^process [01] exited 2: .*mesh", result.stderr, re.MULTILINE), result.stderr
    assert not (tmp_path / "new").exists()


def test_members_end_with_a_launcher_that_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    proc = launch(run_dir, "train.steps=5000")  # minutes of training left when the launcher dies
    wait_until(lambda: any(r["kind"] == "step" for r in records(run_dir / "ledger.jsonl")), proc)
    pids = json.loads((run_dir / "launch.json").read_text())["pids"]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "members outlived their launcher"


def test_a_cluster_of_one_prints_clean_json(tmp_path):
    run_dir = tmp_path / "run"
    args = ("launch", "--processes", "1", "--devices-per-process", "2", str(DIGITS), *SMALL, "train.steps=5")
    result = run_exp(*args, "--run-dir", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "finished"  # gloo's notes went to the log
