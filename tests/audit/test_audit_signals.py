"""A stopped `exp audit` stops its `exp run` children and leaves no temporary folder.

The audit's temporary folder is found through TMPDIR (tempfile honours it); the
children through /proc (their parent is the audit).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.runtime.runs import EXP

LONG = 100_000
"""Steps the audited spec trains: far more than a test waits for."""


@pytest.fixture
def long_spec(tmp_path: Path) -> Path:
    for name in ("digits_mlp.toml", "base.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    path = tmp_path / "long.toml"
    path.write_text(f'extends = "digits_mlp.toml"\n\n[model]\nhidden = [16]\n\n[train]\nsteps = {LONG}\n')
    return path


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def trained(run_dir: Path) -> bool:
    path = run_dir / "ledger.jsonl"
    return path.exists() and '"kind":"step"' in path.read_text()


class Audit:
    """A real `exp audit` of the long spec, started with TMPDIR in `tmp`."""

    def __init__(self, spec: Path, tmp: Path, *args: str) -> None:
        tmp.mkdir()
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [EXP, "audit", str(spec), "--steps", str(LONG), *args],
            cwd=spec.parent,
            env={**os.environ, "TMPDIR": str(tmp)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.children: list[int] = []

    def folders(self) -> list[Path]:
        return sorted(self.tmp.glob("exp-audit-*"))

    def wait_until_both_runs_train(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            runs = [folder / "t0" / side for folder in self.folders() for side in ("a", "b")]
            self.children = sorted(set(self.children) | set(children_of(self.proc.pid)))
            if len(runs) == 2 and all(trained(run) for run in runs) and len(self.children) >= 2:
                return
            time.sleep(0.05)
        raise TimeoutError("the audit's runs did not start training")

    def cleanup(self) -> None:
        """Leave nothing running, whatever the code under test did."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        for pid in self.children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 75), (signal.SIGINT, 130)])
def test_a_signalled_audit_stops_its_runs_removes_its_folder_and_exits(long_spec, tmp_path, sig, code):
    audit = Audit(long_spec, tmp_path / "tmp")
    try:
        audit.wait_until_both_runs_train()
        audit.proc.send_signal(sig)
        _, err = audit.proc.communicate(timeout=60)
        assert audit.proc.returncode == code, err
        assert len(err.strip().splitlines()) == 1 and sig.name in err, err
        assert "Traceback" not in err
        assert not any(alive(pid) for pid in audit.children), "a run outlived its audit"
        assert audit.folders() == []
        time.sleep(2)  # nothing may recreate it (a late preemption checkpoint)
        assert audit.folders() == []
    finally:
        audit.cleanup()


def test_the_runs_of_a_sigkilled_audit_die_with_it(long_spec, tmp_path):
    audit = Audit(long_spec, tmp_path / "tmp", "--kill")
    try:
        audit.wait_until_both_runs_train()
        audit.proc.send_signal(signal.SIGKILL)
        audit.proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in audit.children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in audit.children), "runs outlived their SIGKILLed audit"
    finally:
        audit.cleanup()


def test_a_signalled_lock_stops_its_run_and_removes_its_folder(long_spec, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [EXP, "lock", str(long_spec), "--steps", str(LONG), "-o", str(tmp_path / "exp.lock")],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (any(trained(run) for run in tmp.glob("exp-lock-*/*")) and children):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            children = children_of(proc.pid)
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 75, err
        assert not any(alive(pid) for pid in children)
        time.sleep(2)
        assert list(tmp.glob("exp-lock-*")) == [] and not (tmp_path / "exp.lock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
