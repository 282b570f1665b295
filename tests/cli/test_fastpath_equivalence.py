"""The fast path of `exp plan/validate/diff/runs` answers exactly as the typer application.

Each invocation runs twice in a fresh process: through `main` (the fast path,
or typer where the fast path hands over) and through the typer application
alone. Exit code, stdout and stderr must be equal, and `main` must have
imported typer only where the fast path was meant to hand over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli import imported_modules
from tests.conftest import EXAMPLES, ROOT

FIXTURE_RUN = ROOT / "tests" / "cli" / "fixtures" / "report_run"

MAIN = (
    "import atexit, os, sys\n"
    # Registered first, so it runs last: after everything the command did.
    "atexit.register(lambda: open(os.environ['TYPER_MARKER'], 'w').write(str('typer' in sys.modules)))\n"
    "sys.argv[0] = 'exp'\n"
    "from expspec.cli import main\n"
    "main()\n"
)
TYPER_APP = "import sys; sys.argv[0] = 'exp'; from expspec.cli import app; app(prog_name='exp')"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Specs (good, bad, a variant) and run directories, referred to by relative paths."""
    root = tmp_path_factory.mktemp("fastpath")
    for name in ("digits_mlp.toml", "base.toml", "char_transformer.toml"):
        shutil.copy(EXAMPLES / name, root / name)
    (root / "bad.toml").write_text(
        'extends = "digits_mlp.toml"\n[optimizer]\nlearning_rate = -1\n[train]\nsteps = "many"\n', encoding="utf-8"
    )
    (root / "variant.toml").write_text('extends = "digits_mlp.toml"\n[train]\nlog_every = 7\n', encoding="utf-8")
    shutil.copytree(FIXTURE_RUN, root / "runs" / "done")
    shutil.copytree(FIXTURE_RUN, root / "runs" / "group" / "other")
    (root / "runs" / "group" / "other" / "events.jsonl").unlink()  # recorded no end
    (root / "empty").mkdir()
    (root / "plan.json").write_text((FIXTURE_RUN / "plan.json").read_text(encoding="utf-8"), encoding="utf-8")
    return root


def _exp(code: str, args: list[str], cwd: Path, marker: Path) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "TYPER_MARKER": str(marker)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout, result.stderr


FAST = [
    ["plan", "digits_mlp.toml"],
    ["plan", "digits_mlp.toml", "--json"],
    ["plan", "--json", "digits_mlp.toml", "train.steps=7", "model.hidden=[16]"],
    ["plan", "digits_mlp.toml", "--explain", "--devices", "1"],
    ["plan", "char_transformer.toml", "--devices=2", "--json", "--explain"],
    ["plan", "bad.toml"],
    ["plan", "digits_mlp.toml", "train.steps=-1", "--json"],
    ["plan", "digits_mlp.toml", "--devices", "3"],
    ["plan", "missing.toml"],
    ["validate", "digits_mlp.toml", "variant.toml"],
    ["validate", "digits_mlp.toml", "bad.toml", "--allow-import", "mypkg", "--allow-import=other"],
    ["diff", "digits_mlp.toml", "variant.toml"],
    ["diff", "digits_mlp.toml", "char_transformer.toml", "--json"],
    ["diff", "runs/done", "plan.json"],
    ["diff", "runs/done", "runs/group/other", "--json"],
    ["diff", "digits_mlp.toml", "bad.toml"],
    ["diff", "digits_mlp.toml", "nowhere"],
    ["runs"],
    ["runs", "runs", "--json"],
    ["runs", "runs/done"],
    ["runs", "empty"],
    ["runs", "nowhere"],
]

TYPER = [
    ["plan", "--help"],
    ["plan", "digits_mlp.toml", "-h"],
    ["plan"],
    ["plan", "digits_mlp.toml", "--bogus"],
    ["plan", "digits_mlp.toml", "--devices", "0"],
    ["plan", "digits_mlp.toml", "--devices", "two"],
    ["plan", "digits_mlp.toml", "--devices"],
    ["plan", "digits_mlp.toml", "--json=yes"],
    ["plan", "digits_mlp.toml", "--json", "--json"],
    ["validate"],
    ["validate", "--allow-import"],
    ["diff", "digits_mlp.toml"],
    ["diff", "digits_mlp.toml", "variant.toml", "bad.toml"],
    ["runs", "runs", "empty"],
    ["runs", "--jsn"],
]


@pytest.mark.parametrize("args", FAST + TYPER, ids=" ".join)
def test_main_answers_as_the_typer_application(folder, tmp_path, args):
    marker = tmp_path / "typer-imported"
    via_main = _exp(MAIN, args, folder, marker)
    via_typer = _exp(TYPER_APP, args, folder, tmp_path / "unused")
    assert via_main == via_typer
    assert "Traceback" not in via_main[2]
    # Where the fast path ran, typer was never imported; where it handed over, it was.
    assert marker.read_text() == str(args in TYPER), via_main


def test_exp_plan_imports_no_typer_nor_click():
    modules = imported_modules(
        "-m", "expspec", "plan", str(EXAMPLES / "digits_mlp.toml"), "--json", shows='"trajectory"'
    )
    assert not {"typer", "click", "rich"} & modules


@pytest.mark.parametrize("encoding", ["utf-8", "ascii", "latin-1"])
def test_echo_writes_the_bytes_typer_echo_writes(encoding):
    code = (
        "import sys, typer\n"
        "from expspec.cli.console import echo\n"
        "write = echo if sys.argv[1] == 'echo' else typer.echo\n"
        'write(\'{"name": "digits ü"}\')\n'
        "write('')\n"
    )
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    outputs = [
        subprocess.run([sys.executable, "-c", code, which], env=env, capture_output=True, timeout=60)
        for which in ("echo", "typer")
    ]
    assert outputs[0].returncode == outputs[1].returncode
    assert outputs[0].stdout == outputs[1].stdout
    assert outputs[0].stderr.splitlines()[-1:] == outputs[1].stderr.splitlines()[-1:]


def test_a_reader_gone_away_ends_both_alike(folder, tmp_path):
    """`exp plan --json | head` where head has exited: click's exit 1 and no traceback."""
    ends = []
    for code in (MAIN, TYPER_APP):
        read, write = os.pipe()
        os.close(read)
        try:
            result = subprocess.run(
                [sys.executable, "-c", code, "plan", "digits_mlp.toml", "--json"],
                cwd=folder,
                env={**os.environ, "TYPER_MARKER": str(tmp_path / "marker")},
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
            )
        finally:
            os.close(write)
        ends.append((result.returncode, result.stderr))
    assert ends[0] == ends[1] == (1, "")
