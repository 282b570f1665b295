"""The trackers are optional extras: a spec asking for one that is not installed is refused before
anything starts, and a run that asks for neither never imports wandb or MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.runtime.runs import DIGITS
from tests.runtime.trackers_read import TINY, tracker_env

# The CLI run in this interpreter: `hide` makes a library unimportable (find_spec finds nothing),
# and at exit the libraries that were imported are written to $PROBE_OUT.
PROBE = """
import atexit, json, os, sys
for name in os.environ.get("HIDE", "").split():
    sys.modules[name] = None
def _report():
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump(sorted(m for m in ("wandb", "mlflow") if sys.modules.get(m) is not None), out)
atexit.register(_report)
sys.argv[0] = "exp"
from expspec.cli import main
main()
"""


def exp_in_process(tmp_path, *args: str, hide: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    probe = tmp_path / "imported.json"
    env = {**os.environ, **tracker_env(tmp_path), "COLUMNS": "200", "PROBE_OUT": str(probe), "HIDE": hide}
    result = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, *args], capture_output=True, text=True, timeout=300, env=env
    )
    return result, json.loads(probe.read_text()) if probe.exists() else []


@pytest.mark.parametrize(
    "key,table",
    [("wandb", '{project="p",mode="offline"}'), ("mlflow", '{tracking_uri="file:/nonexistent/mlruns"}')],
)
def test_a_missing_tracker_is_refused_with_one_line_before_anything_starts(tmp_path, key, table):
    run_dir = tmp_path / "runs" / "run"
    result, _ = exp_in_process(
        tmp_path, "run", str(DIGITS), *TINY, f"logging.{key}={table}", "--run-dir", str(run_dir), hide=key
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{DIGITS}: logging.{key}: "), lines
    assert f"pip install 'expspec[{key}]'" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_run_without_trackers_imports_neither_and_one_with_a_tracker_imports_it(tmp_path):
    plain, imported = exp_in_process(tmp_path, "run", str(DIGITS), *TINY, "--run-dir", str(tmp_path / "a"), "-q")
    assert plain.returncode == 0, plain.stderr
    assert imported == []
    # The probe sees an import when there is one: the check above can fail.
    store = (tmp_path / "mlruns").as_uri()
    tracked, imported = exp_in_process(
        tmp_path,
        "run",
        str(DIGITS),
        *TINY,
        f'logging.mlflow={{tracking_uri="{store}"}}',
        "--run-dir",
        str(tmp_path / "b"),
        "-q",
    )
    assert tracked.returncode == 0, tracked.stderr
    assert imported == ["mlflow"]


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_validate_and_plan_of_a_tracked_spec_load_no_tracker_and_no_jax(tmp_path, command):
    code = (
        "import sys; sys.argv[0] = 'exp'\n"
        "from expspec.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('jax', 'wandb', 'mlflow') if m in sys.modules))"
    )
    overrides = ['logging.wandb={project="p"}', 'logging.mlflow={tracking_uri="file:/tmp/m"}']
    result = subprocess.run(
        [sys.executable, "-P", "-c", code, command, str(DIGITS), *overrides],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
