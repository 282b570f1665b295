"""`checkpoint.every_seconds`: saves by wall time, for steps too short to checkpoint every N of them."""

from __future__ import annotations

import json

import pytest

from expspec.runtime.runs.records import read_jsonl
from tests.helpers import MINIMAL
from tests.runtime.runs import DIGITS, beginnings, checkpoint_hashes, exp, run_json

CLOCK = ["model.hidden=[16]", "train.eval_every=0", "train.log_every=1", "checkpoint.keep_last=50"]
TIME_ALONE = ["checkpoint.every_steps=0", "checkpoint.every_seconds=0.2", "train.steps=4000"]
"""4,000 steps take over a second even on a fast core: several periods of the clock."""


def _plan(*args: str) -> dict:
    result = exp("plan", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["checkpoint"]


def test_every_seconds_alone_turns_the_step_cadence_off(tmp_path):
    spec = tmp_path / "clock.toml"
    spec.write_text(MINIMAL + "\n[checkpoint]\nevery_seconds = 30\n")
    assert (_plan(str(spec))["every_steps"], _plan(str(spec))["every_seconds"]) == (0, 30.0)
    # A step cadence given (here by base.toml, which the example extends) is kept beside the clock.
    assert (_plan(str(DIGITS), "checkpoint.every_seconds=30")["every_steps"]) == 100


def test_saves_come_by_the_clock_and_resume_like_any_other(tmp_path):
    run_dir = tmp_path / "run"
    summary = run_json(str(DIGITS), "--run-dir", str(run_dir), *CLOCK, *TIME_ALONE)
    saved = sorted(checkpoint_hashes(run_dir))
    assert saved[-1] == 4000
    by_clock = saved[:-1]
    assert len(by_clock) >= 2, f"a run of 4000 steps saved only at {saved}"
    # No more saves than periods the training lasted (the attempt's start counts as a save).
    times = [r["time"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "train"]
    assert len(by_clock) <= (times[-1] - times[0]) / 0.2 + 2, (len(by_clock), times[-1] - times[0])

    cut = tmp_path / "cut"
    stopped = run_json(str(DIGITS), "--run-dir", str(cut), *CLOCK, *TIME_ALONE, "--stop-at", str(by_clock[0] + 3))
    assert stopped["step"] == by_clock[0] + 3
    finished = run_json(str(DIGITS), "--run-dir", str(cut), *CLOCK, *TIME_ALONE)
    assert beginnings(cut)[-1][0] == "resume"
    assert finished["full_hash"] == summary["full_hash"]


def test_keep_every_needs_a_step_cadence(tmp_path):
    result = exp("plan", str(DIGITS), *TIME_ALONE, "checkpoint.keep_every=1000")
    assert result.returncode == 2
    assert "checkpoint.keep_every" in result.stderr and "every_steps" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a two-process cluster on localhost, ~20 s
def test_the_members_of_a_cluster_save_by_the_clock_at_the_same_steps(tmp_path):
    from tests.runtime.test_cluster import _cluster, _results

    args = (str(DIGITS), *CLOCK, "train.steps=600", "mesh.data=-1", *TIME_ALONE[:2])
    results = _results(_cluster(tmp_path / "run", args=args))
    assert [code for code, _ in results] == [0, 0], results
    members = [checkpoint_hashes(tmp_path / "run", name) for name in ("ledger.jsonl", "ledger.process-1.jsonl")]
    assert sorted(members[0]) == sorted(members[1]), "the members saved different steps"
    by_clock = sorted(members[0])[:-1]
    assert by_clock, "no save by the clock in a run of 600 steps"
    assert all(step % 10 == 0 for step in by_clock), "saves fell between the members' agreements"
