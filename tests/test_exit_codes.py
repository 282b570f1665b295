"""The process contract: one enum of exit codes, and the codes `exp` really exits with."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from expspec.exit_codes import ExitCode
from tests.runtime.runs import DIGITS, exp, kill, start, wait_for_step

TINY = ("model.hidden=[16]", "train.eval_every=0")


def test_the_codes():
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "CHECK_FAILED": 1,
        "BAD_INPUT": 2,
        "RUN_FAILED": 3,
        "PREEMPTED": 75,
        "INTERRUPTED": 130,
    }


def test_importing_the_codes_imports_nothing_else_of_the_package():
    """`exp`'s first line imports it, before any signal handler is in place: it must stay cheap."""
    code = (
        "import sys, expspec.exit_codes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('expspec', 'typer', 'pydantic', 'click', 'jax')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['expspec', 'expspec.exit_codes', 'expspec.lazy']"


def test_a_bad_spec_exits_bad_input(tmp_path):
    result = exp("run", str(DIGITS), "optimizer.learning_rate=-1", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert "learning_rate" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def preempted(tmp_path_factory):
    """A run stopped by SIGTERM after step 2; its run directory and exit code."""
    run_dir = tmp_path_factory.mktemp("exit-codes") / "run"
    proc = start(str(DIGITS), *TINY, "train.steps=100000", "--run-dir", str(run_dir))
    wait_for_step(run_dir, 2, proc)
    return run_dir, kill(proc, signal.SIGTERM)


def test_a_preempted_run_exits_preempted(preempted):
    _, code = preempted
    assert code == ExitCode.PREEMPTED


def test_a_refused_run_directory_exits_bad_input(preempted):
    run_dir, _ = preempted
    result = exp(
        "run", str(DIGITS), *TINY, "train.steps=100000", "optimizer.learning_rate=0.5", "--run-dir", str(run_dir)
    )
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert "holds a run of trajectory" in result.stderr


def test_the_cli_maps_what_the_library_reports():
    from expspec.audit.report import AuditReport
    from expspec.cli.exit_status import audit_exit_code, stopped_exit_code

    assert audit_exit_code(AuditReport()) is ExitCode.OK
    assert stopped_exit_code(signal.SIGTERM) is ExitCode.PREEMPTED
    assert stopped_exit_code(signal.SIGINT) is ExitCode.INTERRUPTED


def test_the_child_command_line():
    from expspec.runtime.processes.child_command import exp_run_argv

    argv = exp_run_argv("-odd.toml", ["a=1"], "runs/x", stop_at=3, allow_imports=("lab",), json=True, quiet=True)
    head = [sys.executable, "-P", "-m", "expspec", "run"]
    assert argv == [*head, "--run-dir", "runs/x", "--stop-at", "3", "--allow-import", "lab", "--json", "-q", "--"] + [
        "-odd.toml",
        "a=1",
    ]
