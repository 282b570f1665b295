"""Every library error is bad input (exit 2) or a run failure (exit 3), and the CLI maps them once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import tomllib
from types import ModuleType

import numpy as np

from expspec.cli.console import exit_code_for
from expspec.errors import BadInput, RunFailure
from expspec.exit_codes import ExitCode
from tests.conftest import ROOT
from tests.runtime.runs import DIGITS, exp

TINY = (str(DIGITS), "model.hidden=[16]", "train.eval_every=0")


def _package_modules() -> list[ModuleType]:
    """Every module of every package the distribution installs (pyproject's list), sub-packages included."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    modules: dict[str, ModuleType] = {}
    for name in config["tool"]["setuptools"]["packages"]:
        package = importlib.import_module(name)
        modules[name] = package
        for found in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            modules[found.name] = importlib.import_module(found.name)
    return list(modules.values())


def _error_classes() -> list[type[Exception]]:
    return [
        value
        for module in _package_modules()
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == module.__name__
    ]


def test_every_library_error_derives_from_exactly_one_base():
    classes = _error_classes()
    names = {cls.__name__ for cls in classes}
    assert {"SpecError", "DataError", "ModelError", "RunRefused", "RunFailed", "RunError"} <= names, names
    wrong = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in classes
        if cls not in (BadInput, RunFailure) and issubclass(cls, BadInput) == issubclass(cls, RunFailure)
    ]
    assert not wrong, (
        f"derive each from exactly one of expspec.errors.BadInput (exit 2) or RunFailure (exit 3): {wrong}"
    )


def test_the_bases_module_imports_nothing_heavy():
    probe = "import sys, expspec.errors; print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'pydantic', 'jax'}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_cli_maps_each_base_to_its_exit_code():
    class Unforeseen(Exception):
        pass

    assert exit_code_for(BadInput("x")) == ExitCode.BAD_INPUT == 2
    assert exit_code_for(RunFailure("x")) == ExitCode.RUN_FAILED == 3
    assert exit_code_for(Unforeseen("x")) == ExitCode.RUN_FAILED


def test_a_bad_data_file_exits_2_and_leaves_nothing(tmp_path):
    data = tmp_path / "e.npz"
    np.savez(data, x=np.ones((10, 2)), y=np.arange(9))
    run_dir = tmp_path / "runs" / "bad"
    result = exp("run", *TINY, f'data={{kind="npz", path="{data}", batch_size=8}}', "--run-dir", str(run_dir))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "e.npz" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_run_that_cannot_go_on_exits_3(tmp_path):
    args = (*TINY, "train.steps=4", "checkpoint.every_steps=2", "checkpoint.async=false", "--run-dir", str(tmp_path))
    first = exp("run", *args, "--stop-at", "2", "-q")
    assert first.returncode == 0, first.stderr
    state = max((p for p in (tmp_path / "checkpoints" / "2").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(state.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    state.write_bytes(bytes(raw))
    result = exp("run", *args)
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "no checkpoint is intact" in line
