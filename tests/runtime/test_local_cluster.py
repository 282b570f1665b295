"""The local-cluster launcher: how members are started, watched and stopped.

Supervision is tested with small Python members (real processes, real signals)
that stand in for `exp run`; tests/cli/test_launch_cli.py drives real clusters.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from expspec.runtime.processes.local_cluster import (
    DEVICE_COUNT_FLAG,
    LaunchOptions,
    LaunchResult,
    free_port,
    member_argv,
    member_env,
    xla_flags,
)
from expspec.runtime.processes.supervision import Failure, Member, Outcome, supervise

# What the stand-in members share: a SIGTERM handler that exits 75, as `exp run` does.
PRELUDE = """\
import os, signal, sys, time
from pathlib import Path
def preempted(signum, frame):
    sys.exit(75)
"""


@pytest.fixture
def catching():
    """Members below signal this process: only the main thread catches signals, and an
    uncaught SIGTERM would end the test run itself."""
    assert threading.current_thread() is threading.main_thread()


def member(code: str, output: Path | None = None) -> Member:
    return Member(argv=[sys.executable, "-c", PRELUDE + code], env={"PATH": "/usr/bin:/bin"}, output=output)


def test_xla_flags_replace_only_the_device_count():
    inherited = f"--xla_cpu_enable_fast_math=false {DEVICE_COUNT_FLAG}=8 --xla_dump_to=/tmp/x"
    assert xla_flags(inherited, 2) == f"--xla_cpu_enable_fast_math=false --xla_dump_to=/tmp/x {DEVICE_COUNT_FLAG}=2"
    assert xla_flags("", 3) == f"{DEVICE_COUNT_FLAG}=3"


def test_member_env_binds_loopback_and_numbers_the_process():
    env = member_env({"HOME": "/h", "XLA_FLAGS": "--a=1"}, port=4321, processes=3, process_id=2, devices=4)
    assert env["JAX_COORDINATOR_ADDRESS"] == env["JAX_COORDINATOR_BIND_ADDRESS"] == "127.0.0.1:4321"
    assert (env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"], env["JAX_PLATFORMS"]) == ("3", "2", "cpu")
    assert env["XLA_FLAGS"] == f"--a=1 {DEVICE_COUNT_FLAG}=4"
    assert env["HOME"] == "/h"


def test_free_port_can_be_bound_on_loopback():
    ports = {free_port() for _ in range(5)}
    assert len(ports) > 1
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))


def test_member_argv_quiets_all_but_process_zero():
    options = LaunchOptions(
        spec=Path("s.toml"),
        run_dir=Path("runs/x"),
        processes=2,
        overrides=("mesh.data=-1",),
        stop_at=5,
        allow_imports=("mypkg",),
        as_json=True,
    )
    head = [
        sys.executable,
        "-P",
        "-m",
        "expspec",
        "run",
        "--run-dir",
        "runs/x",
        "--stop-at",
        "5",
        "--allow-import",
        "mypkg",
    ]
    assert member_argv(options, 0) == [*head, "--json", "--", "s.toml", "mesh.data=-1"]
    assert member_argv(options, 1) == [*head, "-q", "--", "s.toml", "mesh.data=-1"]


def test_a_failing_member_stops_the_others_at_once(tmp_path):
    out = tmp_path / "process-1.out"
    began = time.monotonic()
    outcome = supervise(
        [member("time.sleep(60)"), member("print('error: boom', file=sys.stderr); sys.exit(3)", out)],
        grace_s=60,
    )
    assert time.monotonic() - began < 10
    assert outcome.failures == [Failure(1, 3, "error: boom")]
    assert outcome.stopped == [0] and outcome.returncodes[0] == -9
    assert outcome.exit_code == 3
    assert LaunchResult(tmp_path, 1, outcome).report() == [
        "process 1 exited 3: error: boom",
        "stopped the other processes (0) with SIGKILL",
        "relaunch the same command to resume from the last checkpoint",
    ]


def test_a_member_killed_by_a_signal_is_named():
    outcome = supervise([member("time.sleep(60)"), member("os.kill(os.getpid(), signal.SIGKILL)")])
    assert outcome.failures[0].describe() == "process 1 was killed by SIGKILL"
    assert outcome.exit_code == 3


def test_process_zero_output_reaches_echo_and_others_go_to_their_file(tmp_path):
    lines = []
    pids = []
    out = tmp_path / "process-1.out"
    outcome = supervise(
        [member("print('result'); print('progress', file=sys.stderr)"), member("print('quiet one')", out)],
        echo=lambda stream, line: lines.append((stream, line)),
        on_started=pids.extend,
    )
    assert outcome.exit_code == 0 and outcome.returncodes == [0, 0] and not outcome.failures
    assert sorted(lines) == [("stderr", "progress\n"), ("stdout", "result\n")]
    assert out.read_text() == "quiet one\n"
    assert len(pids) == 2 and all(isinstance(pid, int) for pid in pids)


def test_launcher_sigterm_is_forwarded_once_and_members_exit_75(tmp_path, catching):
    ready = tmp_path / "ready"
    waiter = "signal.signal(signal.SIGTERM, preempted)\n"
    outcome = supervise(
        [
            # Signal the launcher only once both members can take a SIGTERM.
            member(
                f"{waiter}\nwhile not Path({str(ready)!r}).exists(): time.sleep(0.01)\n"
                "os.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(60)"
            ),
            member(f"{waiter}\nPath({str(ready)!r}).touch()\ntime.sleep(60)"),
        ]
    )
    assert outcome.signal == "SIGTERM"
    assert outcome.returncodes == [75, 75] and outcome.exit_code == 75
    assert LaunchResult(tmp_path, 1, outcome).report() == [
        "relaunch the same command to resume from the last checkpoint"
    ]


def test_members_that_ignore_sigterm_are_killed_after_the_grace_period(catching):
    code = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nos.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(60)"
    began = time.monotonic()
    outcome = supervise([member(code)], grace_s=0.5)
    assert time.monotonic() - began < 10
    assert outcome.failures == [Failure(0, None, "had not stopped 0.5 s after SIGTERM; killed it")]
    assert outcome.exit_code == 3


def test_a_member_left_running_after_its_peer_ended_is_killed():
    outcome = supervise([member("sys.exit(0)"), member("time.sleep(60)")], grace_s=0.5)
    assert outcome.failures == [Failure(1, None, "still ran 0.5 s after process 0 ended; killed it")]
    assert outcome.returncodes == [0, -9]


def test_a_second_sigint_kills_at_once(catching):
    code = (
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "os.kill(os.getppid(), signal.SIGINT)\ntime.sleep(0.5)\nos.kill(os.getppid(), signal.SIGINT)\ntime.sleep(60)"
    )
    began = time.monotonic()
    deaf = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"
    outcome = supervise([member(code), member(deaf)], grace_s=60)
    assert time.monotonic() - began < 10
    assert outcome.interrupted and outcome.signal == "SIGINT"
    assert outcome.returncodes == [-9, -9] and outcome.exit_code == 130


def test_exit_code_rules():
    assert Outcome([0, 0]).exit_code == 0
    assert Outcome([75, 75]).exit_code == 75
    assert Outcome([2, -9], [Failure(0, 2, "bad")], [1]).exit_code == 2
    assert Outcome([-9, 3], [Failure(0, -9), Failure(1, 3)]).exit_code == 3
