"""A SIGTERM or SIGINT to `exp launch` at any moment is a preemption of the cluster.

Before the members start, while they start, while they join: the launcher
forwards the signal to the members that exist, starts no new one, waits for
them and exits 75; never "process 1 was killed by SIGTERM" because of its own
forwarding. Real launchers, real two-process clusters, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from expspec.cli.early_signals import StartupSignals
from expspec.runtime.processes.local_cluster import LaunchResult
from expspec.runtime.processes.supervision import Member, signals_blocked, supervise
from tests.conftest import ROOT
from tests.runtime.runs import DIGITS, EXP

TINY = (str(DIGITS), "train.steps=6", "model.hidden=[16]", "train.eval_every=0", "mesh.data=-1")


def launch(run_dir: Path, *, blocked: bool = False) -> subprocess.Popen[str]:
    """`exp launch` of a 2-process TINY cluster; `blocked`: as a supervisor starts it."""
    argv = [EXP, "launch", "--processes", "2", *TINY, "--run-dir", str(run_dir), "--json"]
    with signals_blocked() if blocked else nullcontext():
        return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ended(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=240)
    return proc.returncode, out, err


def check_preempted(code: int, err: str, where: str) -> None:
    """What holds for every preempted launch: exit 75, no failure named, no traceback."""
    assert code == 75, f"{where}: exit {code}\n{err}"
    assert "Traceback" not in err and "killed by" not in err and "exited" not in err, f"{where}\n{err}"
    assert "relaunch the same command" in err, err


def test_sigterm_before_the_members_start_ends_the_launch_with_75_and_leaves_nothing(tmp_path):
    # 0.25 s: the launcher is importing typer, or (on an idle machine) starting its members.
    proc = launch(tmp_path / "soon")
    time.sleep(0.25)
    code, _, err = ended(proc)
    check_preempted(code, err, "SIGTERM at 0.25 s")
    assert "nothing new to save" in err, err
    # 0 s: its interpreter is starting (held back, as a supervisor does): no member starts.
    run_dir = tmp_path / "at-once"
    code, out, err = ended(launch(run_dir, blocked=True))
    check_preempted(code, err, "SIGTERM at 0 s")
    assert "preempted by SIGTERM before the cluster started: nothing new to save" in err
    assert out == "" and not run_dir.exists()  # nothing started, nothing written


def test_sigterm_while_the_members_start_preempts_the_cluster_with_75(tmp_path):
    run_dir = tmp_path / "run"
    proc = launch(run_dir)
    deadline = time.monotonic() + 120
    while not (run_dir / "launch.json").exists():  # the members exist; their interpreters are starting
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    code, out, err = ended(proc)
    check_preempted(code, err, "SIGTERM as the members started")
    assert json.loads((run_dir / "launch.json").read_text())["returncodes"] == [75, 75]
    summary = json.loads(out)
    assert (summary["outcome"], summary["signal"], summary["checkpoint"]) == ("preempted", "SIGTERM", None)
    assert "preempted by SIGTERM before training started: nothing new to save" in err


def test_a_signal_recorded_before_supervision_starts_no_member(tmp_path):
    """What `exp launch` does with a SIGTERM that its start-up handler recorded: real
    handlers, a real signal to this process, real members that would have run."""
    assert threading.current_thread() is threading.main_thread()  # only it can take signals
    recorder = StartupSignals()
    previous = {sig: signal.signal(sig, recorder) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        ran = tmp_path / "ran"
        member = Member([sys.executable, "-c", f"open({str(ran)!r}, 'w')"], os.environ, signals_blocked=True)
        outcome = supervise([member, member], on_started=lambda pids: pytest.fail("members started"))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert (outcome.signal, outcome.unstarted, outcome.exit_code) == ("SIGTERM", [0, 1], 75)
    assert not ran.exists()
    assert LaunchResult(tmp_path, 1, outcome).report() == [
        "preempted by SIGTERM before the cluster started: nothing new to save",
        "relaunch the same command to resume from the last checkpoint",
    ]
    assert recorder.requested == "SIGTERM"  # handed back: a SIGINT now would be the second


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_any_moment_of_a_launch_ends_in_75_and_the_relaunch_ends_bitwise(tmp_path, sig):
    run_dir = tmp_path / "run"
    delays = [(0.0, True), (0.05, True), (0.1, False), (0.2, False), (0.4, False)]
    delays += [(d, False) for d in (0.8, 1.5, 2.5, 4.0, 6.0, 8.0)]
    for delay, blocked in delays:
        proc = launch(run_dir, blocked=blocked)
        time.sleep(delay)
        code, out, err = ended(proc, sig)
        if code == 0:  # it had finished: nothing left to preempt
            assert json.loads(out)["outcome"] in ("finished", "complete"), err
            continue
        check_preempted(code, err, f"{sig.name} at {delay} s")
    reference = launch(tmp_path / "reference")
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    relaunched = launch(run_dir)
    resumed, err = relaunched.communicate(timeout=600)
    assert relaunched.returncode == 0, err
    assert json.loads(resumed)["full_hash"] == json.loads(out)["full_hash"]


@pytest.mark.slow
def test_a_second_sigint_to_the_launcher_kills_every_member_at_once(tmp_path):
    proc = launch(tmp_path / "run")
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "launch.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    code, _, err = ended(proc, signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err and "interrupted twice: killed every process without saving" in err
