"""The committed run directory an earlier expspec recorded, and how the tests resume copies of it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.runtime.runs import exp

FIXTURE = ROOT / "tests" / "fixtures" / "rundirs" / "digits-0.1.0"
"""Made by `tests/fixtures/rundirs/make.py`: `spec.toml` and `run/`, stopped at step 3 of 6."""

ONE_DEVICE = {"XLA_FLAGS": ""}
"""The fixture was recorded on one CPU device: its environment class."""


def copy_fixture(tmp_path: Path) -> Path:
    """A copy of the fixture folder (spec.toml and run/) to resume."""
    return Path(shutil.copytree(FIXTURE, tmp_path / FIXTURE.name))


def run_spec(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`exp run spec.toml ARGS` inside `folder`, as the fixture was made."""
    return exp("run", "spec.toml", *args, cwd=folder, env=ONE_DEVICE)


def finish(folder: Path, run: str = "run", *args: str) -> dict[str, Any]:
    """Resume (or start) `folder/run` to its end; the `--json` summary, asserting exit 0."""
    done = run_spec(folder, *args, "--run-dir", run, "--json", "-q")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fresh_hash(tmp: Path) -> str:
    """The final full hash of the fixture's spec run uninterrupted, here."""
    folder = copy_fixture(tmp)
    result = finish(folder, "fresh")
    assert result["outcome"] == "finished" and result["step"] == 6
    return result["full_hash"]


def events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.startswith("{")]


def assert_bitwise(run_dir: Path, full_hash: str, fresh: str) -> None:
    """The resumed run ends on the uninterrupted run's bits, where that is promised:
    within the environment class the fixture was recorded in."""
    recorded = json.loads((FIXTURE / "run" / "env.json").read_text())["class_id"]
    now = json.loads((run_dir / "env.json").read_text())["class_id"]
    if now != recorded:
        changes = [e for e in events(run_dir) if e["event"] == "environment_change"]
        assert changes, "the environment class changed and no environment_change event says so"
        pytest.skip(f"this environment class ({now}) is not the fixture's ({recorded}): bits are not promised")
    assert full_hash == fresh
