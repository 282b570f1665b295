"""The `exp` command line, run as a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exp import __version__
from tests.conftest import EXAMPLES, ROOT, run_exp
from tests.helpers import MINIMAL

JAX_FAMILY = ("jax", "jaxlib", "flax", "optax", "orbax")


def imported_modules(*code_or_module: str) -> set[str]:
    """Top-level modules a fresh interpreter imports, from `python -X importtime`."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *code_or_module],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "pydantic" in names or "typer" in names, result.stderr[-2000:]
    return names


def test_spec_and_compiler_import_no_jax():
    assert not set(JAX_FAMILY) & imported_modules("-c", "import exp.compiler, exp.spec")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["plan", str(EXAMPLES / "digits_mlp.toml"), "--json", "--explain"],
        ["validate", *map(str, sorted(EXAMPLES.glob("*_*.toml")))],
        ["schema"],
        ["diff", str(EXAMPLES / "digits_mlp.toml"), str(EXAMPLES / "char_transformer.toml"), "--json"],
        ["runs", str(EXAMPLES)],
        ["report", str(ROOT / "tests" / "cli" / "fixtures" / "report_run"), "-o", "-"],
    ],
    ids=["help", "plan", "validate", "schema", "diff", "runs", "report"],
)
def test_cli_commands_import_no_jax(args):
    assert not set(JAX_FAMILY) & imported_modules("-m", "exp", *args)


def test_version_and_help():
    version = run_exp("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"expspec {__version__}"
    help_ = run_exp("--help")
    assert help_.returncode == 0
    for command in ("validate", "plan", "schema"):
        assert command in help_.stdout


def test_every_example_validates():
    specs = [str(p) for p in sorted(EXAMPLES.glob("*.toml")) if p.name != "base.toml"]
    result = run_exp("validate", *specs)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ok  ") == len(specs)


def test_explain_marks_classes_and_draws_the_seed_tree():
    result = run_exp("plan", str(EXAMPLES / "digits_mlp.toml"), "--explain")
    assert result.returncode == 0
    rows = {line.split()[0]: line for line in result.stderr.splitlines() if line.strip()}
    assert rows["train.log_every"].rstrip().endswith("operational")
    assert rows["optimizer.learning_rate"].rstrip().endswith("trajectory")
    assert "root seed 0" in result.stderr and "shuffle =" in result.stderr


def test_bad_spec_exits_2_with_one_line_per_problem(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(
        MINIMAL.replace('kind = "mlp"', 'kind = "mlp"\nhiden = [1]').replace("steps = 10", 'steps = "x"')
        + '[optimizer]\nkind = "adam"\nlearning_rate = -1\n'
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["validate"], ["plan"], ["plan", "--json"]):
        result = run_exp(*command, str(spec), cwd=tmp_path)
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 3 and all(line.startswith(f"{spec}:") for line in lines), lines
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "args",
    [
        ["plan"],
        ["plan", "missing.toml"],
        ["plan", str(EXAMPLES / "digits_mlp.toml"), "--bogus"],
        ["frobnicate"],
        ["plan", str(EXAMPLES / "digits_mlp.toml"), "train.steps"],
    ],
)
def test_usage_errors_exit_2_without_traceback(args, tmp_path):
    result = run_exp(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip()
    assert list(tmp_path.iterdir()) == []
