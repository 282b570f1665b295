"""Signals from the first instruction of `exp run`: a preemption at any moment ends in exit 75.

Real `exp run` processes and real signals, sent at delays from the moment the
process exists. Where a delay may fall inside the interpreter's own start (its
first ~50-100 ms, before any line of `exp` runs), the process is started the way
`exp launch` and sweeps start their members: with SIGTERM and SIGINT blocked
(`signals_blocked`), so that the signal waits for exp's handler.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from expspec.runtime.processes.supervision import signals_blocked
from tests.conftest import ROOT
from tests.runtime.runs import DIGITS, EXP, committed_checkpoints, run_json, trained_steps, wait_for_commit

TINY = (str(DIGITS), "train.steps=6", "model.hidden=[16]", "train.eval_every=0")
"""Seconds of start-up, a blink of training: a signal in the first second lands before step 1."""


def start(*args: str, blocked: bool = False) -> subprocess.Popen[str]:
    """`exp ARGS` as a real process; `blocked`: as a supervisor starts it."""
    with signals_blocked() if blocked else nullcontext():
        return subprocess.Popen([EXP, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signalled(
    proc: subprocess.Popen[str], delay: float, *sigs: signal.Signals, gap: float = 0.3
) -> tuple[int, str, str]:
    """Send `sigs` to `proc`, the first `delay` s after it started; exit code, stdout, stderr."""
    time.sleep(delay)
    for i, sig in enumerate(sigs):
        if i:
            time.sleep(gap)
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


def preempt_at_start(run_dir: Path, sig: signal.Signals, delay: float, blocked: bool) -> tuple[int, str]:
    """`exp run` of TINY, `sig` at `delay`: its exit code and last line, checked for what must always hold."""
    proc = start("run", *TINY, "--run-dir", str(run_dir), "--json", blocked=blocked)
    code, out, err = signalled(proc, delay, sig)
    where = f"{sig.name} at {delay} s: exit {code}\n{err}"
    assert "Traceback" not in err, where
    assert code in (75, 0), where  # never by the signal (-15, -2), never a failure
    summary = json.loads(out)
    if code == 75:
        assert (summary["outcome"], summary["signal"]) == ("preempted", sig.name), where
    return code, err.strip().splitlines()[-1]


def test_sigterm_from_the_first_instruction_on_exits_75_and_the_run_then_ends_bitwise(tmp_path):
    run_dir = tmp_path / "run"
    # 0.25 s: exp's own imports (typer, pydantic); 1 s: JAX starting; 0 s: inside the
    # interpreter's start (held back, as a supervisor does).
    for delay, blocked in ((0.25, False), (1.0, False), (0.0, True)):
        code, last = preempt_at_start(run_dir, signal.SIGTERM, delay, blocked)
        assert code == 75, f"{delay} s: {last}"
        assert "nothing new to save" in last and "checkpoint saved" not in last, last
        assert trained_steps(run_dir, 0) == [] and committed_checkpoints(run_dir) == []
    straight = run_json(*TINY, "--run-dir", str(tmp_path / "straight"))
    resumed = run_json(*TINY, "--run-dir", str(run_dir))
    assert resumed["outcome"] == "finished" and resumed["full_hash"] == straight["full_hash"]


def wait_for_lock(run_dir: Path, proc: subprocess.Popen[str]) -> None:
    """Until the run holds its directory: JAX is up, no step has run yet (building takes seconds)."""
    deadline = time.monotonic() + 120
    while not (run_dir / "LOCK").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)


def test_sigint_at_start_up_is_a_clean_stop_and_a_second_one_exits_130_at_once(tmp_path):
    code, last = preempt_at_start(tmp_path / "once", signal.SIGINT, 0.25, blocked=False)
    assert code == 75 and last.startswith("preempted by SIGINT before training started: nothing new to save"), last
    proc = start("run", *TINY, "--run-dir", str(tmp_path / "twice"), "-q")
    wait_for_lock(tmp_path / "twice", proc)
    code, _, err = signalled(proc, 0.0, signal.SIGINT, signal.SIGINT, gap=0.05)
    assert code == 130, err  # not -2 (killed by SIGINT), not a KeyboardInterrupt traceback
    assert "Traceback" not in err and "interrupted again: stopped at once, nothing saved" in err
    assert committed_checkpoints(tmp_path / "twice") == []


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGTERM, 75), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_storm_from_start_to_exit_never_ends_the_run_by_the_signal(tmp_path, sig, expected):
    # Every 2 ms, until it has exited: its start, its stop, and Python's own finalization
    # (where Python puts the default handlers back) all take signals.
    proc = start("run", *TINY, "--run-dir", str(tmp_path), "-q", blocked=True)
    while proc.poll() is None:
        proc.send_signal(sig)
        time.sleep(0.002)
    _, err = proc.communicate()
    assert proc.returncode == expected, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("delay", "blocked"), [(0.0, True), (0.15, False)])
def test_ctrl_c_ends_other_commands_quietly_with_130(delay, blocked):
    code, _, err = signalled(start("plan", str(DIGITS), blocked=blocked), delay, signal.SIGINT)
    assert (code, err) == (130, "")


def test_a_preemption_before_the_first_step_says_nothing_was_saved(tmp_path):
    proc = start("run", *TINY, "--run-dir", str(tmp_path))
    wait_for_lock(tmp_path, proc)
    code, _, err = signalled(proc, 0.0, signal.SIGTERM)
    assert code == 75, err
    assert err.strip().splitlines()[-1] == (
        "preempted by SIGTERM before step 1: nothing new to save; no checkpoint yet; run again to resume"
    )
    assert committed_checkpoints(tmp_path) == []


def test_a_preemption_without_a_save_names_the_last_checkpoint(tmp_path):
    args = (str(DIGITS), "train.steps=1000000", "model.hidden=[16]", "train.eval_every=0")
    proc = start(
        "run", *args, "checkpoint.every_steps=50", "checkpoint.on_preemption=false", "--run-dir", str(tmp_path)
    )
    wait_for_commit(tmp_path, 100, proc)
    code, _, err = signalled(proc, 0.0, signal.SIGTERM)
    assert code == 75, err
    last = err.strip().splitlines()[-1]
    said = re.fullmatch(r"preempted by SIGTERM at step (\d+): not saved; the last checkpoint is step (\d+); .*", last)
    assert said is not None, last
    step, newest = map(int, said.groups())
    assert newest == committed_checkpoints(tmp_path)[-1] < step, last


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_any_delay_of_start_up_ends_in_75_and_resumes_bitwise(tmp_path, sig):
    run_dir = tmp_path / "run"
    delays = [(0.0, True), (0.02, True), (0.05, True), (0.1, True)]
    delays += [(d, False) for d in (0.2, 0.4, 0.8, 1.5, 2.5, 4.0)]
    for delay, blocked in delays:
        preempt_at_start(run_dir, sig, delay, blocked)
    straight = run_json(*TINY, "--run-dir", str(tmp_path / "straight"))
    resumed = run_json(*TINY, "--run-dir", str(run_dir))
    assert resumed["full_hash"] == straight["full_hash"]
