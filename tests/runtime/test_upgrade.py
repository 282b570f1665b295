"""Run directories made by an earlier expspec resume under this one unless the math changed.

The fixture under tests/fixtures/rundirs was recorded by an earlier version and
is committed as bytes: this test must pass, unchanged, in every later version.
Plans doctored to look older (a part or a field missing, another fingerprint
recipe) resume as an `upgrade`; a real change of the math is refused, named.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from expspec.compiler import Plan
from tests.conftest import ROOT
from tests.runtime.runs import snapshot
from tests.runtime.upgrade_fixture import FIXTURE, assert_bitwise, copy_fixture, events, finish, fresh_hash, run_spec

FAKE = "f" * 64
"""A trajectory fingerprint as another recipe would have computed it."""

CHECKPOINT_FIELDS = {"checkpoint.every_seconds": None, "checkpoint.writer": "auto"}
"""Operational fields the fixture's plan was recorded without."""


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return fresh_hash(tmp_path_factory.mktemp("fresh"))


def _doctor(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path.read_bytes()


def _without_field(data, dotted):
    *tables, leaf = dotted.split(".")
    table = data["spec"]
    for key in tables:
        table = table[key]
    del table[leaf]
    for key in [k for k in data["fields"] if k == dotted or k.startswith(dotted + ".")]:
        del data["fields"][key]


def test_the_committed_run_directory_of_an_earlier_version_resumes_bitwise(tmp_path, fresh):
    folder = copy_fixture(tmp_path)
    result = finish(folder)
    assert (result["outcome"], result["step"]) == ("finished", 6)
    assert [(e["event"], e["step"]) for e in events(folder / "run") if e["event"] in ("start", "resume")] == [
        ("start", 0),
        ("resume", 3),
    ]
    assert_bitwise(folder / "run", result["full_hash"], fresh)


def test_a_plan_recorded_before_a_part_and_a_field_existed_resumes_as_an_upgrade(tmp_path, fresh):
    folder = copy_fixture(tmp_path)
    run = folder / "run"

    def older(data):
        del data["mesh"]
        _without_field(data, "logging")

    recorded = _doctor(run / "plan.json", older)
    result = finish(folder)
    assert (result["outcome"], result["step"]) == ("finished", 6)
    (upgrade,) = [e for e in events(run) if e["event"] == "upgrade"]
    assert "mesh" in upgrade["reason"] and upgrade["parts"]["added"] == ["mesh"]
    added = {"logging.tensorboard": False, "logging.profile": None, "train.eval_generate": 0}
    added |= {"logging.wandb": None, "logging.mlflow": None}
    assert upgrade["added"] == {**added, **CHECKPOINT_FIELDS}
    assert upgrade["to"]["trajectory"] == upgrade["from"]["trajectory"]
    assert upgrade["kept"] == "plan.1.json" and (run / "plan.1.json").read_bytes() == recorded  # never lost
    assert Plan.from_json((run / "plan.json").read_bytes()).name == "digits-fixture"
    assert_bitwise(run, result["full_hash"], fresh)


def test_another_fingerprint_recipe_is_accepted_when_every_input_is_equal(tmp_path, fresh):
    """An older recipe: another format number and fingerprint, a trajectory field the old
    version did not have (at its default now); its checkpoint carries the old fingerprint."""
    folder = copy_fixture(tmp_path)
    run = folder / "run"

    def older(data):
        data["format"] = 0
        data["fingerprints"]["trajectory"] = FAKE
        _without_field(data, "train.grad_accum")

    _doctor(run / "plan.json", older)
    _doctor(run / "checkpoints" / "3" / "meta" / "metadata", lambda meta: meta.update(trajectory=FAKE))
    result = finish(folder)
    assert (result["outcome"], result["step"]) == ("finished", 6)
    (upgrade,) = [e for e in events(run) if e["event"] == "upgrade"]
    assert (upgrade["from"]["format"], upgrade["from"]["trajectory"]) == (0, FAKE)
    assert upgrade["to"]["format"] == 1 and upgrade["to"]["trajectory"] != FAKE
    added = {"train.grad_accum": 1, "train.eval_generate": 0, "logging.profile": None}
    added |= {"logging.wandb": None, "logging.mlflow": None}
    assert upgrade["added"] == {**added, **CHECKPOINT_FIELDS}
    assert_bitwise(run, result["full_hash"], fresh)


def test_a_checkpoint_of_another_trajectory_is_still_refused(tmp_path):
    folder = copy_fixture(tmp_path)
    run = folder / "run"
    _doctor(run / "checkpoints" / "3" / "meta" / "metadata", lambda meta: meta.update(trajectory=FAKE))
    before = snapshot(run)
    done = run_spec(folder, "--run-dir", "run")
    assert done.returncode == 2, done.stderr
    assert f"checkpoint of trajectory {FAKE[:12]}" in done.stderr and "Traceback" not in done.stderr
    after = snapshot(run)
    for taken in ("LOCK", "stderr.log"):  # this refusal comes after the lock is taken
        after.pop(taken, None)
    assert after == before


@pytest.mark.parametrize(
    "doctor, overrides, named",
    [
        (lambda data: data.pop("mesh"), ["optimizer.learning_rate=0.02"], "optimizer.learning_rate 0.01 -> 0.02"),
        (lambda data: _without_field(data, "model.dropout"), [], "model.dropout (absent) -> 0.1"),
        (lambda data: data["seeds"].update(init=7), [], "seeds.init 7 ->"),
    ],
    ids=["changed-field", "new-field-not-at-its-default", "changed-seed"],
)
def test_a_real_change_of_the_math_is_refused_naming_it(tmp_path, doctor, overrides, named):
    folder = copy_fixture(tmp_path)
    run = folder / "run"
    _doctor(run / "plan.json", doctor)
    before = snapshot(run)
    done = run_spec(folder, *overrides, "--run-dir", "run")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert named in line and "holds a run of trajectory" in line and "Traceback" not in done.stderr
    assert snapshot(run) == before


MACHINE_ROOTS = {
    f"{folder}/" for folder in ("/home", "/root", "/Users", tempfile.gettempdir(), str(Path.home()), str(ROOT.parent))
}
"""Where the fixture was made, or any machine's home or temporary folder: none may appear in it."""


def test_the_fixture_is_small_and_names_no_machine_path():
    files = [p for p in FIXTURE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 100_000
    assert not any(p.name in ("LOCK", "stderr.log") for p in files)
    for path in files:
        text = path.read_text("latin-1")
        assert not any(root in text for root in MACHINE_ROOTS), path
