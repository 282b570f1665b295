"""A disk that fills up while a run saves must cost only the steps since the last
checkpoint: the run stops with one line (exit 3), everything committed before stays
readable and truthful, and once space returns the same command resumes to the bits
an uninterrupted run reaches.

The disk is a small tmpfs, mounted as root or, without root, in a user namespace
(`disk_full_tmpfs`); the test is skipped only where neither works, and says why.
The tmpfs is sized from a real run's checkpoint so that a handful of checkpoints
fit and the run's whole life does not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.reliability.disk_full_tmpfs import Tmpfs, TmpfsUnavailable, mount_tmpfs
from tests.runtime.runs import DIGITS, EXP, exp

STEPS = 400
EVERY = 20
OVERRIDES = (
    f"train.steps={STEPS}",
    f"checkpoint.every_steps={EVERY}",
    # Nothing is deleted, so checkpoints pile up until the disk is full.
    "checkpoint.keep_last=1000",
    "train.eval_every=0",
)
PAGE = 4096
CHECKPOINTS_THAT_FIT = 5.5
# plan.json, env.json, LOCK, metrics, and a ledger and events file that grow
# (an error event carries its traceback).
BOOKKEEPING = 160 * 1024
ROOMY = "512m"
NO_SPACE = re.compile(r"no space left on device|enospc|disk is full|disk full|out of (disk )?space", re.IGNORECASE)


def _run(run_dir: Path, *extra: str, disk: Tmpfs | None = None) -> subprocess.CompletedProcess[str]:
    args = ("run", str(DIGITS), *OVERRIDES, *extra, "--run-dir", str(run_dir), "-q", "--json")
    return disk.run([EXP, *args], cwd=ROOT, timeout=180) if disk else exp(*args, timeout=180)


def _tmpfs_bytes(folder: Path) -> int:
    """What `folder` occupies on a tmpfs, which allocates whole pages per file."""
    return sum(-(-path.stat().st_size // PAGE) * PAGE for path in folder.rglob("*") if path.is_file())


def _committed(checkpoints: Path) -> list[int]:
    """Steps whose checkpoint reached its final name; Orbax renames a checkpoint
    there only once every byte of it is written."""
    if not checkpoints.is_dir():
        return []
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.is_dir() and p.name.isdigit())


def _lines(data: bytes, name: str) -> tuple[list[dict[str, Any]], bool]:
    """The records of a JSON-lines file and whether its last line is torn.

    Every terminated line must parse: only the line being written when the disk
    filled may be incomplete.
    """
    text = data.decode("utf-8", errors="replace")
    parts = text.split("\n")
    torn = parts[-1] != ""
    records = []
    for number, line in enumerate(parts[:-1], 1):
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise AssertionError(f"{name}:{number} is not a JSON record ({err}): {line[:200]!r}") from None
    return records, torn


def _mount(point: Path, size: str) -> Tmpfs:
    try:
        return mount_tmpfs(point, size)
    except TmpfsUnavailable as err:
        pytest.skip(str(err))


@dataclass(frozen=True)
class Reference:
    full_hash: str
    checkpoint_bytes: int


@dataclass(frozen=True)
class Filled:
    """A run that ran out of disk, as it was left, after space came back."""

    disk: Tmpfs
    run_dir: Path
    """As commands on `disk` see it; the test reads it at `disk.seen(run_dir)`."""
    result: subprocess.CompletedProcess[str]
    committed: list[int]
    ledger: bytes
    events: bytes
    free_bytes: int


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    _mount(tmp_path_factory.mktemp("tmpfs-probe"), "1m").close()  # skips here, before the long run, if it cannot
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = _run(run_dir)
    assert result.returncode == 0, result.stderr
    checkpoints = run_dir / "checkpoints"
    steps = _committed(checkpoints)
    assert steps, f"the uninterrupted run saved no checkpoint in {checkpoints}"
    largest = max(_tmpfs_bytes(checkpoints / str(step)) for step in steps)
    return Reference(json.loads(result.stdout)["full_hash"], largest)


@pytest.fixture(scope="module", params=["async", "sync"])
def filled(
    request: pytest.FixtureRequest, reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Filled]:
    mode = request.param
    mount = tmp_path_factory.mktemp(f"tmpfs-{mode}")
    size = -(-int(BOOKKEEPING + CHECKPOINTS_THAT_FIT * reference.checkpoint_bytes) // PAGE) * PAGE
    disk = _mount(mount, str(size))
    try:
        run_dir = mount / "run"
        result = _run(run_dir, f"checkpoint.async={'true' if mode == 'async' else 'false'}", disk=disk)
        stat = os.statvfs(disk.seen(mount))
        ledger = disk.seen(run_dir / "ledger.jsonl")
        events = disk.seen(run_dir / "events.jsonl")
        state = Filled(
            disk=disk,
            run_dir=run_dir,
            result=result,
            committed=_committed(disk.seen(run_dir / "checkpoints")),
            ledger=ledger.read_bytes() if ledger.exists() else b"",
            events=events.read_bytes() if events.exists() else b"",
            free_bytes=stat.f_bavail * stat.f_frsize,
        )
        disk.resize(ROOMY)
        yield state
    finally:
        disk.close()


def _filled_mid_run(filled: Filled) -> None:
    """The premise: the disk filled after some checkpoints and before the end."""
    assert len(filled.committed) >= 2 and filled.committed[-1] < STEPS, (
        f"the tmpfs was sized to fill after a few checkpoints, but checkpoints {filled.committed} were committed "
        f"(exit {filled.result.returncode})"
    )


def test_stops_with_one_line_error_and_exit_3(filled: Filled) -> None:
    """A full disk is an operational failure the user must be able to read at a
    glance: Orbax's background-thread tracebacks are not that."""
    stderr = filled.result.stderr
    assert filled.result.returncode == 3, f"exit {filled.result.returncode}, stderr:\n{stderr[-3000:]}"
    _filled_mid_run(filled)
    lines = stderr.splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines, wanted one:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr
    assert lines[0].startswith("error:"), lines[0]
    assert NO_SPACE.search(lines[0]), f"the error does not say the disk is full: {lines[0]}"


def test_committed_checkpoints_and_ledger_survive(filled: Filled, tmp_path: Path) -> None:
    """What was committed before the disk filled is the evidence a resume and an
    audit rely on: it must still restore to its hashes, and the ledger must not
    claim a checkpoint that never reached the disk."""
    _filled_mid_run(filled)
    report_file = tmp_path / "audit.json"
    audit = filled.disk.run([EXP, "audit", str(filled.run_dir), "--json", str(report_file)], cwd=ROOT, timeout=180)
    assert audit.returncode == 0, f"exp audit exit {audit.returncode}:\n{audit.stdout}\n{audit.stderr}"
    (check,) = json.loads(report_file.read_text())["checks"]
    assert check["status"] == "passed", check
    assert check["compared_steps"] == filled.committed

    ledger, _ = _lines(filled.ledger, "ledger.jsonl")
    assert any(r.get("kind") == "step" for r in ledger), "the ledger lost its step records"
    claimed = sorted(r["step"] for r in ledger if r.get("kind") == "checkpoint")
    phantom = sorted(set(claimed) - set(filled.committed))
    assert not phantom, (
        f"ledger.jsonl records checkpoints {phantom} that were never committed (committed: {filled.committed})"
    )

    events, _ = _lines(filled.events, "events.jsonl")
    names = [e.get("event") for e in events]
    assert names[:1] == ["start"], names
    if filled.free_bytes >= PAGE:
        assert "error" in names, f"events.jsonl has no error event though {filled.free_bytes} bytes were free: {names}"


def test_resumes_after_space_returns(filled: Filled, reference: Reference) -> None:
    """Running out of disk is transient: the same command, once space returns,
    must pick up the last good checkpoint and reach the uninterrupted run's bits."""
    _filled_mid_run(filled)
    result = _run(filled.run_dir, disk=filled.disk)
    assert result.returncode == 0, f"the resume exited {result.returncode}:\n{result.stderr[-3000:]}"
    summary = json.loads(result.stdout)
    assert (summary["outcome"], summary["step"]) == ("finished", STEPS), summary
    assert summary["full_hash"] == reference.full_hash

    events, torn = _lines(filled.disk.seen(filled.run_dir / "events.jsonl").read_bytes(), "events.jsonl")
    assert not torn, "events.jsonl ends in a torn line after the resume"
    before = len(_lines(filled.events, "events.jsonl")[0])
    resumes = [e for e in events[before:] if e.get("event") == "resume"]
    assert resumes, f"no resume event after the failure: {[e.get('event') for e in events]}"
    assert resumes[0]["step"] == filled.committed[-1], (resumes[0], filled.committed)

    ledger_after = filled.disk.seen(filled.run_dir / "ledger.jsonl").read_bytes()
    _, torn = _lines(ledger_after, "ledger.jsonl")
    assert not torn, "ledger.jsonl ends in a torn line after the resume"
    kept = filled.ledger[: filled.ledger.rfind(b"\n") + 1]
    assert ledger_after.startswith(kept), "the resume rewrote ledger lines written before the disk filled"
