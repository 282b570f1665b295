"""The audit's verdicts are made in one place, from evidence, and never changed after.

The judge is pure: these tests hand it evidence (no runs, no files) and read the
verdict. The lock document round-trips the committed lock byte for byte, and the
one environment comparison reads a lock entry's class and a run directory's alike.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from expspec.audit.judge import ScheduleEvidence, Side, judge_schedule
from expspec.audit.ledger import StepComparison
from expspec.audit.localize import environment_difference
from expspec.audit.lock_document import LockDocument
from expspec.audit.lock_verdicts import LockCase, RerunEvidence, judge_rerun
from expspec.audit.report import CheckResult

LOCK = Path(__file__).resolve().parents[2] / "examples" / "ci" / "exp.lock"
AGREE = StepComparison([1, 2, 3, 4], None, [])
PART = StepComparison([1, 2, 3, 4], 3, ["params/w"])


def test_a_verdict_is_built_by_keyword_and_never_changed():
    with pytest.raises(TypeError):
        CheckResult("lock", "a.toml", "a", "passed", "fine")  # type: ignore[misc]
    result = CheckResult(check="lock", target="a.toml", name="a", status="passed", summary="fine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "failed"  # type: ignore[misc]


def _schedule(fresh: StepComparison, resumed: StepComparison, **changes) -> ScheduleEvidence:
    sides = tuple(Side(description=d, steps=(1, 2, 3, 4)) for d in ("A", "B fresh", "B resumed"))
    evidence = ScheduleEvidence(
        target="a.toml",
        name="a",
        steps=4,
        cuts=(2,),
        kill=False,
        fresh=fresh,
        resumed=resumed,
        sides=sides,  # type: ignore[arg-type]
        final_hashes=("h", "h"),
        resumed_at=(2,),
        resume_problem=None,
        seconds=2.0,
    )
    return dataclasses.replace(evidence, **changes)


def test_the_schedule_verdicts_follow_the_evidence():
    determinism, resume = judge_schedule(_schedule(AGREE, AGREE))
    assert (determinism.status, resume.status) == ("passed", "passed")
    assert resume.details["final_full_hashes"] == ["h", "h"] and determinism.seconds == 1.0

    _, resume = judge_schedule(_schedule(AGREE, AGREE, final_hashes=("h", "g")))
    assert (resume.status, resume.summary) == ("failed", "final full hashes differ at step 4")

    determinism, resume = judge_schedule(_schedule(PART, PART))
    assert (determinism.status, determinism.first_divergence, resume.status) == ("failed", 3, "skipped")
    assert "see determinism" in resume.summary

    _, resume = judge_schedule(_schedule(AGREE, AGREE, cuts=()))
    assert (resume.status, resume.compared_steps) == ("skipped", [])


def _rerun(**changes) -> RerunEvidence:
    evidence = RerunEvidence(
        comparison=AGREE,
        locked_steps=[1, 2, 3, 4],
        rerun_steps=[1, 2, 3, 4],
        hash_steps=["2", "4"],
        differing_hashes=[],
        environment={},
        install=None,
        inputs={},
        allow_other_environment=False,
    )
    return dataclasses.replace(evidence, **changes)


def test_the_five_lock_verdicts_are_decided_in_order():
    case = LockCase(spec="a.toml", name="a", rerecord="exp lock a.toml")
    assert judge_rerun(case, _rerun()).kind == "reproduced"
    regression = judge_rerun(case, _rerun(differing_hashes=[4]))
    assert (regression.kind, regression.first_divergence) == ("regression", 4)
    moved = {"packages.numpy": ["0.0.1", "2.0"]}
    changed = judge_rerun(
        case, _rerun(comparison=PART, environment=moved, install="pip install -c x", inputs={"data": ["a", "b"]})
    )
    assert (changed.status, changed.kind, changed.details["install"]) == (
        "failed",
        "environment_changed",
        "pip install -c x",
    )
    allowed = judge_rerun(case, _rerun(comparison=PART, environment=moved, allow_other_environment=True))
    assert (allowed.status, allowed.kind) == ("skipped", "environment_changed")
    assert "no distance measured" in allowed.summary and "ledgers part at step 3" in allowed.summary
    assert judge_rerun(case, _rerun(inputs={"data": ["a", "b"]})).kind == "input_changed"


def test_the_lock_document_reads_and_writes_the_committed_lock_unchanged():
    text = LOCK.read_text(encoding="utf-8")
    assert LockDocument.model_validate_json(text).to_json() == text


def test_one_environment_comparison_reads_a_lock_entry_and_a_run_directory_alike(tmp_path):
    locked = json.loads(LOCK.read_text())["entries"][0]["environment"]
    now = {**locked, "packages": {**locked["packages"], "numpy": "0.0.1"}, "device_count": 4}
    for name, env in (("a", locked), ("b", now)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "env.json").write_text(json.dumps({"class": env}))
    expected = {"device_count": [1, 4], "packages.numpy": [locked["packages"]["numpy"], "0.0.1"]}
    assert environment_difference(locked, now) == expected
    assert environment_difference(tmp_path / "a", tmp_path / "b") == expected
