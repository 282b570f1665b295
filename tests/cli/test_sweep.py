"""`exp run --sweep`: a grid of points, each its own run directory, refused whole when pointless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expspec.compiler import plan_spec
from expspec.runtime.processes.sweep import PointResult, SweepResult
from tests.conftest import run_exp
from tests.runtime.runs import DIGITS

TINY = ("train.steps=5", "train.eval_every=0")


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_three_point_sweep_trains_three_trajectories_and_finds_them_complete_again(tmp_path):
    args = ("run", str(DIGITS), *TINY, "--sweep", "optimizer.learning_rate=1e-3,3e-3,1e-2", "--json")
    first = run_exp(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    parent = tmp_path / "runs" / "digits-mlp-sweep"
    names = ["learning_rate=0.001", "learning_rate=0.003", "learning_rate=0.01"]
    assert sorted(p.name for p in parent.iterdir()) == sorted(names)
    plans = [json.loads((parent / name / "plan.json").read_text()) for name in names]
    assert len({plan["fingerprints"]["trajectory"] for plan in plans}) == 3
    assert [plan["spec"]["optimizer"]["learning_rate"] for plan in plans] == [1e-3, 3e-3, 1e-2]
    summary = json.loads(first.stdout)
    assert summary["exit_code"] == 0 and summary["stopped"] is None
    assert [p["outcome"] for p in summary["points"]] == ["finished"] * 3
    assert [p["point"] for p in summary["points"]] == [{"learning_rate": v} for v in (1e-3, 3e-3, 1e-2)]
    assert all(p["step"] == 5 and set(p["eval"]) == {"accuracy", "loss"} for p in summary["points"])
    # One line per point (its run directory, outcome and eval), then the table.
    done = [line for line in first.stderr.splitlines() if line.startswith("[") and " finished " in line]
    assert len(done) == 3 and all("eval accuracy" in line for line in done)
    assert "runs/digits-mlp-sweep/learning_rate=0.003" in done[1]

    # Run again (one point of it, to keep the test short): the same directory, found
    # complete by `exp run` itself, and its eval read back from metrics.jsonl.
    again = run_exp(*args[:-2], "optimizer.learning_rate=3e-3", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (point,) = json.loads(again.stdout)["points"]
    assert point["outcome"] == "complete" and point["run_dir"] == "runs/digits-mlp-sweep/learning_rate=0.003"
    assert point["eval"] == summary["points"][1]["eval"]


def test_sweeping_only_operational_fields_is_refused(tmp_path):
    result = run_exp(
        "run",
        str(DIGITS),
        *TINY,
        "--sweep",
        "train.log_every=1,2",
        "--sweep",
        "checkpoint.every_steps=5,10",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{DIGITS}: ")
    assert "sweeping only operational fields (train.log_every, checkpoint.every_steps) changes no result" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "sweep,message",
    [
        ("optimizer.learning_rate=1e-3,-1", "--sweep: optimizer.learning_rate: must be > 0.0 (got -1)"),
        ("model.hidden=[64],[128", "--sweep: model.hidden: '[128' is not a TOML value"),
        ("optimizer.learnin_rate=1e-3,1e-2", "optimizer.learnin_rate: unknown key; did you mean 'learning_rate'?"),
        ("optimizer.learning_rate=1e-3,0.001", "are the same experiment"),
        ("train.steps=5,6", "is swept and also set by 'train.steps=5'"),
    ],
    ids=["range", "syntax", "unknown-key", "duplicate", "also-set"],
)
def test_a_bad_point_is_refused_before_anything_runs(tmp_path, sweep, message):
    result = run_exp("run", str(DIGITS), *TINY, "--sweep", "seed=1,2", "--sweep", sweep, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_point_directory_of_another_trajectory_refuses_the_whole_sweep(tmp_path):
    taken = tmp_path / "grid" / "learning_rate=0.01"
    taken.mkdir(parents=True)
    (taken / "plan.json").write_text(plan_spec(DIGITS, [*TINY, "seed=7"]).to_json())
    before = _tree(tmp_path)
    sweep = "optimizer.learning_rate=1e-3,1e-2"
    result = run_exp("run", str(DIGITS), *TINY, "--sweep", sweep, "--run-dir", str(tmp_path / "grid"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{taken}: holds a run of trajectory" in result.stderr
    assert _tree(tmp_path) == before  # the first point, which was free, did not run either


def _result(code: int, outcome: str | None = None) -> PointResult:
    summary = {"outcome": outcome} if outcome else None
    return PointResult(point=None, run_dir=Path("r"), exit_code=code, summary=summary)  # type: ignore[arg-type]


def test_exit_code_policy():
    assert SweepResult([_result(0, "finished"), _result(0, "complete")]).exit_code == 0
    # Failures do not stop the sweep; its code is the first failure's.
    assert SweepResult([_result(3), _result(0, "finished"), _result(2)]).exit_code == 3
    # Preempted: stop, 75, rerun to resume (even after a failure).
    assert SweepResult([_result(2), _result(75)], stopped_by="preempted").exit_code == 75
    assert SweepResult([_result(130)], stopped_by="interrupted").exit_code == 130
