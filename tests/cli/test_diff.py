"""`exp diff`: specs, plan files and run directories compared, as real processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_exp
from tests.runtime.runs import DIGITS, run_json, snapshot


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """The digits example and its base, copied so that specs in tmp_path can extend it."""
    for name in ("digits_mlp.toml", "base.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path


def variant(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f'extends = "digits_mlp.toml"\n{body}', encoding="utf-8")
    return path


def diff_json(a: Path, b: Path) -> tuple[int, dict]:
    result = run_exp("diff", str(a), str(b), "--json")
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def test_log_every_alone_is_operational_and_exits_0(specs):
    other = variant(specs, "log.toml", "[train]\nlog_every = 7\n")
    code, document = diff_json(specs / "digits_mlp.toml", other)
    assert code == 0
    assert document == {
        "trajectory_equal": True,
        "changes": [{"key": "train.log_every", "a": 10, "b": 7, "class": "operational"}],
        "environment": None,
    }
    human = run_exp("diff", str(specs / "digits_mlp.toml"), str(other))
    assert human.returncode == 0 and human.stdout == ""
    row = next(line for line in human.stderr.splitlines() if line.startswith("train.log_every"))
    assert row.split()[-1] == "operational"
    assert "same trajectory" in human.stderr


def test_learning_rate_is_trajectory_exits_1_and_comes_first(specs):
    other = variant(specs, "lr.toml", "[optimizer]\nlearning_rate = 0.01\n[train]\nlog_every = 7\n")
    code, document = diff_json(specs / "digits_mlp.toml", other)
    assert code == 1 and document["trajectory_equal"] is False
    assert [(c["key"], c["class"]) for c in document["changes"]] == [
        ("optimizer.learning_rate", "trajectory"),
        ("train.log_every", "operational"),
    ]
    human = run_exp("diff", str(specs / "digits_mlp.toml"), str(other))
    assert human.returncode == 1
    row = next(line for line in human.stderr.splitlines() if line.startswith("optimizer.learning_rate"))
    assert row.split()[-1] == "trajectory"
    assert "trajectories differ" in human.stderr


def test_a_plan_file_compares_with_its_spec(specs, tmp_path):
    plan = run_exp("plan", str(specs / "digits_mlp.toml"), "--json")
    assert plan.returncode == 0, plan.stderr
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.stdout, encoding="utf-8")
    assert diff_json(plan_file, specs / "digits_mlp.toml") == (
        0,
        {"trajectory_equal": True, "changes": [], "environment": None},
    )
    code, document = diff_json(plan_file, variant(specs, "lr.toml", "[optimizer]\nlearning_rate = 0.01\n"))
    assert code == 1 and [c["key"] for c in document["changes"]] == ["optimizer.learning_rate"]


def test_a_plan_from_another_version_is_compared_as_recorded_with_a_note(specs, tmp_path):
    """A plan recorded before a field existed no longer compiles to itself: compared, not refused."""
    spec = variant(specs, "log.toml", "[train]\nlog_every = 7\n")
    plan = run_exp("plan", str(spec), "--json")
    assert plan.returncode == 0, plan.stderr
    document = json.loads(plan.stdout)
    del document["spec"]["train"]["log_every"]  # as if written before `log_every` existed
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document), encoding="utf-8")
    result = run_exp("diff", str(old), str(spec), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["changes"] == [{"key": "train.log_every", "a": 10, "b": 7, "class": "operational"}]
    assert result.stderr.startswith(f"{old}: does not match its own spec") and "compared as recorded" in result.stderr


def test_an_edited_custom_module_is_the_reason_when_no_field_changed(tmp_path):
    shutil.copytree(EXAMPLES / "custom", tmp_path / "custom")
    spec = tmp_path / "custom" / "sines.toml"
    plan = run_exp("plan", str(spec), "--json")
    assert plan.returncode == 0, plan.stderr
    (tmp_path / "plan.json").write_text(plan.stdout, encoding="utf-8")
    with (tmp_path / "custom" / "lab" / "models.py").open("a", encoding="utf-8") as module:
        module.write("\n# edited\n")
    code, document = diff_json(tmp_path / "plan.json", spec)
    assert code == 1
    [change] = document["changes"]
    assert change["key"] == "plan.sources.lab.models" and change["class"] == "trajectory"
    assert change["a"] != change["b"]


def test_kind_change_lists_keys_of_one_side_only(specs):
    other = variant(specs, "sgd.toml", '[optimizer]\nkind = "sgd"\n')
    code, document = diff_json(specs / "digits_mlp.toml", other)
    assert code == 1
    keys = [c["key"] for c in document["changes"]]
    assert keys[0] == "optimizer.kind" and keys.index("optimizer.schedule.kind") < keys.index(
        "optimizer.schedule.decay_steps"
    )
    changes = {c["key"]: c for c in document["changes"]}
    assert (changes["optimizer.kind"]["a"], changes["optimizer.kind"]["b"]) == ("adamw", "sgd")
    assert changes["optimizer.b1"] == {
        "key": "optimizer.b1",
        "a": 0.9,
        "b": None,
        "class": "trajectory",
        "only_in": "a",
    }


def test_run_directories_show_the_environment_difference(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_json(str(DIGITS), "train.steps=3", "--run-dir", str(one))
    run_json(
        str(DIGITS),
        "train.steps=3",
        "mesh.data=-1",
        "--run-dir",
        str(two),
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    before = snapshot(tmp_path)
    code, document = diff_json(one, two)
    assert code == 0
    assert document["changes"] == [{"key": "mesh.data", "a": 1, "b": -1, "class": "operational"}]
    assert document["environment"]["device_count"] == [1, 2]
    assert document["environment"]["mesh"] == [{"data": 1, "fsdp": 1}, {"data": 2, "fsdp": 1}]
    human = run_exp("diff", str(one), str(two))
    assert human.returncode == 0
    assert "device_count" in human.stderr and "another environment class" in human.stderr
    # A run directory against a spec: the plan's fields, no environment.
    code, document = diff_json(one, DIGITS)
    assert code == 1 and document["environment"] is None
    assert document["changes"][0] == {
        "key": "optimizer.schedule.decay_steps",
        "a": 1,
        "b": 550,
        "class": "trajectory",
    }
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("a", "b"),
    [("missing.toml", "other.json"), (".", "bad.toml")],
    ids=["missing-and-not-a-plan", "plain-folder-and-invalid-spec"],
)
def test_bad_input_is_one_line_per_side_naming_the_file_and_exit_2(tmp_path, a, b):
    """Neither side's problem hides the other's; nothing is created or changed."""
    (tmp_path / "other.json").write_text('{"hello": 1}\n', encoding="utf-8")
    (tmp_path / "bad.toml").write_text(
        'name = "t"\n[model]\nkind = "mlp"\n[data]\nkind = "sklearn_digits"\n[train]\nsteps = "x"\n'
    )
    before = snapshot(tmp_path)
    result = run_exp("diff", a, b, "--json", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{a}:") and lines[1].startswith(f"{b}:"), result.stderr
    assert snapshot(tmp_path) == before
