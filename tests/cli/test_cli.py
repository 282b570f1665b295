"""The `exp` command line, run as a real process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from expspec import __version__
from tests.conftest import EXAMPLES, NEEDS_A_RUN, ROOT, run_exp
from tests.helpers import MINIMAL

JAX_FAMILY = ("jax", "jaxlib", "flax", "optax", "orbax")


def imported_modules(*code_or_module: str, returncode: int = 0, shows: str = "") -> set[str]:
    """Top-level modules a fresh interpreter imports, from `python -X importtime`.

    The command must exit with `returncode` and print `shows` (on stdout or stderr):
    one that fails at once imports nothing, so "imports no JAX" would hold for a
    command that did no work at all.
    """
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *code_or_module],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    names = set()
    printed = [result.stdout]
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
        else:
            printed.append(line)
    output = "\n".join(printed)
    assert result.returncode == returncode, f"exit {result.returncode}, wanted {returncode}:\n{output[-2000:]}"
    assert shows in output, f"{shows!r} is not in the output:\n{output[-2000:]}"
    assert names & {"pydantic", "typer", "rich"}, result.stderr[-2000:]
    return names


def test_spec_and_compiler_import_no_jax():
    compile_a_plan = (
        "import sys; from expspec.compiler import plan_spec; import expspec.spec; "
        "print('trajectory', plan_spec(sys.argv[1]).fingerprints.trajectory)"
    )
    modules = imported_modules("-c", compile_a_plan, str(EXAMPLES / "digits_mlp.toml"), shows="trajectory ")
    assert not set(JAX_FAMILY) & modules


@pytest.mark.parametrize(
    ("args", "returncode", "shows"),
    [
        (["--help"], 0, "Commands"),
        (["plan", str(EXAMPLES / "digits_mlp.toml"), "--json", "--explain"], 0, '"trajectory"'),
        (["validate", *(str(p) for p in sorted(EXAMPLES.glob("*_*.toml")) if p.name not in NEEDS_A_RUN)], 0, "ok  "),
        (["schema"], 0, '"$defs"'),
        # Two different specs: exit 1, as `diff` says "they differ".
        (
            ["diff", str(EXAMPLES / "digits_mlp.toml"), str(EXAMPLES / "char_transformer.toml"), "--json"],
            1,
            '"changes"',
        ),
        (["runs", str(ROOT / "tests" / "cli" / "fixtures")], 0, "report_run"),
        (["report", str(ROOT / "tests" / "cli" / "fixtures" / "report_run"), "-o", "-"], 0, "<!DOCTYPE html>"),
    ],
    ids=["help", "plan", "validate", "schema", "diff", "runs", "report"],
)
def test_cli_commands_import_no_jax(args, returncode, shows):
    modules = imported_modules("-m", "expspec", *args, returncode=returncode, shows=shows)
    assert not set(JAX_FAMILY) & modules


def test_version_and_help():
    version = run_exp("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"expspec {__version__}"
    help_ = run_exp("--help")
    assert help_.returncode == 0
    for command in ("validate", "plan", "schema"):
        assert command in help_.stdout


def test_every_example_validates(examples_after_runs):
    specs = [str(p) for p in sorted(examples_after_runs.glob("*.toml")) if p.name != "base.toml"]
    result = run_exp("validate", *specs)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ok  ") == len(specs)


def test_an_example_whose_run_is_missing_names_it(tmp_path):
    shutil.copytree(EXAMPLES, tmp_path / "examples")  # as a fresh clone has it: no runs/ beside it
    result = run_exp("validate", str(tmp_path / "examples" / "sft_lora.toml"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "tiny-llama-hf" in line and ("model.path" in line or "data.tokenizer" in line)


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
