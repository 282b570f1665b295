"""`exp audit SPEC --kill`: the SIGKILL lands mid-training, after a checkpoint at or
before the cut has committed, so the resumed attempt always has steps to compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.audit.test_audit import audit, checks
from tests.conftest import EXAMPLES
from tests.runtime.runs import DIGITS, run_json


@pytest.fixture
def small_digits(tmp_path: Path) -> Path:
    """The digits example with a narrow network: fast steps make the kill's timing hardest."""
    for name in ("digits_mlp.toml", "base.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    path = tmp_path / "small.toml"
    path.write_text('extends = "digits_mlp.toml"\n\n[model]\nhidden = [16]\n', encoding="utf-8")
    return path


@pytest.mark.slow  # ~23 s; the example's own default kill audit runs by default
def test_default_kill_audit_resumes_from_a_checkpoint_at_the_cut_every_time(small_digits, tmp_path):
    for attempt in range(3):
        code, report, stderr = audit(str(small_digits), "--kill", cwd=tmp_path)
        assert code == 0, f"audit {attempt + 1} of 3: {stderr}"
        resume = checks(report)["resume"]
        assert resume["details"]["cuts"] == [10] and resume["details"]["kill"] is True
        # The killed attempt died after checkpoint 10 committed: the next one resumed there.
        assert resume["details"]["resumed_at"] == [10]
        assert resume["compared_steps"] == list(range(11, 21))


def test_the_example_itself_passes_the_default_kill_audit(tmp_path):
    code, report, stderr = audit(str(DIGITS), "--kill", cwd=tmp_path)
    assert code == 0, stderr
    assert checks(report)["resume"]["details"]["resumed_at"] == [10]


def test_a_one_step_spec_audits_determinism_and_says_why_resume_is_skipped(small_digits, tmp_path):
    one = tmp_path / "one.toml"
    one.write_text('extends = "small.toml"\n\n[train]\nsteps = 1\n', encoding="utf-8")
    for kill in ((), ("--kill",)):
        code, report, stderr = audit(str(one), *kill, cwd=tmp_path)
        assert code == 0, stderr
        by = checks(report)
        assert by["determinism"]["status"] == "passed" and by["determinism"]["compared_steps"] == [0, 1]
        assert by["resume"]["status"] == "skipped"
        assert "1 step" in by["resume"]["summary"] and "no step to cut" in by["resume"]["summary"]


def test_a_segment_with_nothing_to_compare_names_the_steps_each_side_recorded(tmp_path):
    run = tmp_path / "run"
    sparse = ("train.steps=10", "train.ledger_every=100", "train.eval_every=0", "checkpoint.every_steps=2")
    run_json(str(DIGITS), *sparse, "--run-dir", str(run), cwd=tmp_path)
    lines = (run / "ledger.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["step"] for line in lines if '"kind":"step"' in line) == [0, 10]
    code, report, _ = audit(str(run), "--segment", "6:9", "--spec", str(DIGITS), cwd=tmp_path)
    segment = checks(report)["segment"]
    assert code == 2 and segment["status"] == "error"
    # Why: the run's ledger holds no step of 7..9 (only 0 and 10); the rerun recorded 7..9.
    assert "steps 0, 10" in segment["summary"] and "steps 7-9" in segment["summary"], segment["summary"]


def test_a_run_that_ends_before_it_can_be_cut_is_a_run_error_that_says_how_far_it_got(tmp_path):
    from expspec.audit.checks import SpecTarget, audit_request
    from expspec.audit.processes import RunError, run_exp_killed

    run_dir = tmp_path / "run"
    request = audit_request(SpecTarget(str(DIGITS)), run_dir, 4, 100)  # stops at step 4, saving there
    with pytest.raises(
        RunError, match=r"ended before it could be killed at step 6 .* step 4, checkpoints committed: \[4\]"
    ):
        run_exp_killed(request, 6, run_dir / "checkpoints")
