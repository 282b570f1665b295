"""Hostile specs through the real console script, in a fresh process.

In-process runs (the other hostile-input tests) cannot see everything the user
would: here `python -m expspec` runs in a subprocess from an empty folder, where a
stray traceback, an imported planted module or a `runs/` folder would reach the
user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import MINIMAL
from tests.reliability import hostile_helpers
from tests.reliability.fuzz_trial import snapshot
from tests.reliability.fuzz_workspace import EVIL_PACKAGE, MARKER
from tests.reliability.hostile_helpers import custom_spec, markers, plant

cwd = hostile_helpers.cwd
"""The shared `cwd` fixture, bound here so pytest finds it (importing the name would trip ruff's F811)."""


# ---------------------------------------------------------------------------
# The console script in a fresh process.


def exp(*args: str | Path, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE")}
    env |= {"EXP_CACHE_DIR": str(cache), "COLUMNS": "80", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "expspec", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cache(tmp_path_factory) -> Path:
    """The compilation cache lives outside the snapshot: it is allowed to exist."""
    return tmp_path_factory.mktemp("xla-cache")


BAD = (
    'name = "bad"\n'
    "[model]\n"
    'kind = "mlp"\n'
    "hiden = [64]\n"
    "[data]\n"
    'kind = "sklearn_digits"\n'
    'batch_size = "\\u001b[2J"\n'
    "[optimizer]\n"
    'kind = "adam"\n'
    "learning_rate = nan\n"
    "[train]\n"
    "steps = 10\n"
)


@pytest.mark.parametrize("command", [["validate"], ["plan", "--json"], ["run", "--run-dir", "out"], ["run"]])
def test_subprocess_refuses_a_bad_spec_one_line_per_problem(tmp_path, cwd, cache, command):
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD)
    before = snapshot(tmp_path)
    done = exp(command[0], spec, *command[1:], cwd=cwd, cache=cache)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{spec}:4: model.hiden: unknown key; did you mean 'hidden'? (got [64])",
        f'{spec}:7: data.batch_size: must be an integer (got "\\u001b[2J")',
        f"{spec}:10: optimizer.learning_rate: must be a finite number (got nan)",
    ]
    assert snapshot(tmp_path) == before and not (cwd / "runs").exists()


def test_subprocess_custom_code_runs_only_with_allow_import(tmp_path, cwd, cache):
    folder = tmp_path / "specs"
    folder.mkdir()
    plant(folder, tmp_path)
    spec = custom_spec(folder, f"{EVIL_PACKAGE}.sub:make")
    before = snapshot(tmp_path)
    for args in (
        ["validate", spec],
        ["plan", spec, "--json"],
        ["run", spec],
        ["validate", spec, "--allow-import", "x"],
    ):
        done = exp(*args, cwd=cwd, cache=cache)
        assert "Traceback" not in done.stderr and "IMPORTED" not in done.stdout, done.stderr
        assert done.returncode == (2 if args[0] == "run" else 0), done.stderr
    assert snapshot(tmp_path) == before and markers(tmp_path) == []
    # The marker does appear once the import is allowed: the check above could see one.
    done = exp("validate", spec, "--allow-import", EVIL_PACKAGE, cwd=cwd, cache=cache)
    assert markers(tmp_path) == [f"{MARKER}{EVIL_PACKAGE}", f"{MARKER}{EVIL_PACKAGE}.sub"], done.stderr


@pytest.mark.parametrize(
    "data", ['kind = "npz"\npath = "missing.npz"', 'kind = "text_chars"\npath = "missing.txt"'], ids=["npz", "text"]
)
def test_subprocess_run_of_a_missing_data_file_leaves_no_run_directory(tmp_path, cwd, cache, data):
    """Product bug while this fails: the refusal (exit 2) comes after `runs/<name>/LOCK` was written."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace('kind = "sklearn_digits"', data))
    done = exp("run", spec, cwd=cwd, cache=cache)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"{spec}: data.path: "), done.stderr
    assert sorted(p.relative_to(cwd).as_posix() for p in cwd.rglob("*")) == []
