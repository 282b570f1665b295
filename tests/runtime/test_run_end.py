"""The end of a run is a state: a run killed or preempted after its last step, before
its `finished` record, is finished by the next attempt (final evaluation, records).

The window between the final checkpoint's commit and the `finished` record is the
final evaluation. A data source of the test's own whose `eval_batches` sleeps (for
as long as LAB_EVAL_SLEEP says) widens it, so the signal lands there every time:
the test waits for the final step's committed folder, then signals.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.conftest import EXAMPLES, run_exp
from tests.runtime.runs import EXP, events, exp, wait_for_commit
from tests.runtime.test_commit_records import assert_checkpoints_ledgered

STEPS = 6
SLOW = """\
import os
import time

from lab.data import make_sines


def make(seed, batch_size, **args):
    source = make_sines(seed, batch_size, **args)
    batches = source.eval_batches

    def slow_eval():
        time.sleep(float(os.environ.get("LAB_EVAL_SLEEP", "0")))
        return batches()

    source.eval_batches = slow_eval
    return source
"""


def _spec(tmp_path: Path) -> tuple[str, ...]:
    shutil.copytree(EXAMPLES / "custom", tmp_path / "custom")
    (tmp_path / "custom" / "lab" / "slow.py").write_text(SLOW, encoding="utf-8")
    return (
        str(tmp_path / "custom" / "sines.toml"),
        'data.target="lab.slow:make"',
        f"train.steps={STEPS}",
        "train.eval_every=0",
        "checkpoint.every_steps=2",
        "--allow-import",
        "lab",
    )


def _interrupted(tmp_path: Path, sig: signal.Signals, sleep: float) -> tuple[tuple[str, ...], Path, int]:
    """A run signalled during its final evaluation, after the last checkpoint committed."""
    args, run_dir = _spec(tmp_path), tmp_path / "run"
    proc = subprocess.Popen(
        [EXP, "run", *args, "--run-dir", str(run_dir), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LAB_EVAL_SLEEP": str(sleep)},
    )
    try:
        assert wait_for_commit(run_dir, STEPS, proc) == STEPS
    finally:
        proc.send_signal(sig)
        proc.communicate(timeout=120)
    return args, run_dir, proc.returncode


def _listed(run_dir: Path) -> dict:
    result = run_exp("runs", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    [run] = json.loads(result.stdout)["runs"]
    return run


def _finishes(args: tuple[str, ...], run_dir: Path) -> dict:
    """The next attempt finishes the run: final evaluation, metrics, `finished` record; its summary."""
    before = _listed(run_dir)
    again = exp("run", *args, "--run-dir", str(run_dir), "--json", "-q")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["outcome"] == "finished", summary
    assert summary["step"] == STEPS and set(summary["eval"]) == {"loss", "mse"}
    [finished] = [e for e in events(run_dir) if e["event"] == "finished"]
    assert finished["step"] == STEPS and finished["resumed_to_finish"] is True
    assert finished["eval"] == summary["eval"] and finished["full_hash"] == summary["full_hash"]
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["split"] == "eval"] == [STEPS]

    # `exp runs` agreed with `exp run` before (not finished) and agrees after (done).
    assert before["status"] in ("killed", "preempted") and (before["step"], before["total"]) == (STEPS, STEPS)
    assert "run again to finish" in before["detail"], before["detail"]
    after = _listed(run_dir)
    assert after["status"] == "done" and after["eval"] == summary["eval"] and after["eval_step"] == STEPS
    return summary


def test_a_sigkill_after_the_final_commit_is_finished_by_the_next_attempt(tmp_path):
    args, run_dir, code = _interrupted(tmp_path, signal.SIGKILL, sleep=60)
    assert code == -signal.SIGKILL
    assert not [e for e in events(run_dir) if e["event"] == "finished"]
    summary = _finishes(args, run_dir)
    # The kill came after the final commit: that checkpoint has its ledger record all the same.
    assert STEPS in assert_checkpoints_ledgered(run_dir)

    # Finished now: the next attempt is complete, writes nothing, and reports the recorded evaluation.
    recorded = (run_dir / "events.jsonl").read_bytes()
    complete = exp("run", *args, "--run-dir", str(run_dir), "--json", "-q")
    assert complete.returncode == 0, complete.stderr
    assert json.loads(complete.stdout)["outcome"] == "complete"
    assert json.loads(complete.stdout)["eval"] == summary["eval"]
    assert (run_dir / "events.jsonl").read_bytes() == recorded


def test_a_sigterm_in_the_final_evaluation_is_a_preemption_finished_by_the_next_attempt(tmp_path):
    args, run_dir, code = _interrupted(tmp_path, signal.SIGTERM, sleep=2)
    assert code == 75, "a SIGTERM after the last step must end in exit 75, the final evaluation left to do"
    [preempted] = [e for e in events(run_dir) if e["event"] == "preempted"]
    assert preempted["step"] == STEPS and preempted["eval"] is None
    _finishes(args, run_dir)
