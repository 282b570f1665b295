"""Helpers shared by the hostile-input tests: run `exp` in-process and insist on its promises.

The hand-written hostile-spec tests (`test_hostile_cases.py`,
`test_hostile_references.py`, `test_hostile_subprocess.py`) all run the command
line from an empty folder and check the same things of every refusal (exit 2,
one line per problem, no control characters, no traceback, nothing written),
and the custom-target tests plant modules that give themselves away when
imported. This module holds those helpers and the `cwd` fixture once.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from expspec.cli import app
from tests.helpers import MINIMAL
from tests.reliability.fuzz_trial import snapshot
from tests.reliability.fuzz_workspace import EVIL_MODULE, EVIL_PACKAGE, MARKER, evil_source

RUNNER = CliRunner()


# ---------------------------------------------------------------------------
# Helpers: run the command line in-process from an empty folder, and insist on
# the promises every refusal keeps.


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """An empty working directory: anything a command writes there shows up."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


def invoke(tmp_path: Path, cwd: Path, *args: str):
    """`exp ARGS` through the real CLI code; fails the test if anything under tmp_path changed."""
    before = snapshot(tmp_path)
    with contextlib.chdir(cwd):
        result = RUNNER.invoke(app, [str(a) for a in args])
    after = snapshot(tmp_path)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"exp {args[0]} raised {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output and "Exception ignored" not in result.output, result.output
    assert after == before, f"exp {args[0]} wrote to disk: {sorted(set(after) ^ set(before))}"
    return result


def refused(tmp_path: Path, cwd: Path, *args: str) -> list[str]:
    """The problem lines of a refusal (exit 2, at least one line, no control characters)."""
    result = invoke(tmp_path, cwd, *args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines, "refused without saying why"
    for line in lines:
        assert not re.search(r"[\x00-\x1f\x7f]", line), f"control character in {line!r}"
    return lines


def validate(tmp_path: Path, cwd: Path, spec: Path) -> list[str]:
    return refused(tmp_path, cwd, "validate", spec)


def accepted(tmp_path: Path, cwd: Path, spec: Path) -> str:
    result = invoke(tmp_path, cwd, "validate", spec)
    assert result.exit_code == 0, result.output
    return result.output


def plant(folder: Path, marker_root: Path) -> None:
    """Modules that give themselves away when imported: a marker file appears."""
    (folder / f"{EVIL_MODULE}.py").write_text(evil_source(marker_root, EVIL_MODULE))
    (folder / EVIL_PACKAGE).mkdir()
    (folder / EVIL_PACKAGE / "__init__.py").write_text(evil_source(marker_root, EVIL_PACKAGE))
    (folder / EVIL_PACKAGE / "sub.py").write_text(evil_source(marker_root, EVIL_PACKAGE + ".sub"))


def custom_spec(folder: Path, target: str) -> Path:
    spec = folder / "spec.toml"
    spec.write_text(MINIMAL.replace('kind = "mlp"', f'kind = "custom"\ntarget = "{target}"\nargs = {{ width = 8 }}'))
    return spec


def markers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(f"{MARKER}*"))
