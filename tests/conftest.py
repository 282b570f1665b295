"""Shared fixtures: the repository's paths and a way to run `exp` for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_SPECS = sorted(EXAMPLES.glob("*.toml"))


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a TOML file under tmp_path and return its path."""

    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def run_exp(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `exp` console script in a fresh process."""
    exe = Path(sys.executable).with_name("exp")
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd or ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
