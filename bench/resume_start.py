"""P7: time from process start to the first resumed step, against the first step of a fresh run.

Both are fresh `exp run` processes with a warm compilation cache (one untimed
round first). The resumed process restores the step-100 checkpoint, verifies its
full hash and trains on; its first record is step 101.
"""

from __future__ import annotations

from common import DIGITS, Row, at_most, exp_run, median, scratch, train_records

OVERRIDES = ["train.steps=200", "train.log_every=1", "train.eval_every=0"]


def _first_step_after_start(run_dir, proc, after: int) -> float:
    first = next(r for r in train_records(run_dir) if r["step"] > after)
    return first["time"] - proc.started_at


def measure(repeats: int) -> list[Row]:
    fresh, resumed = [], []
    with scratch("resume") as work:
        for i in range(repeats + 1):
            run_dir = work / f"run-{i}"
            proc = exp_run(DIGITS, run_dir, *OVERRIDES, stop_at=100)
            t_fresh = _first_step_after_start(run_dir, proc, 0)
            proc = exp_run(DIGITS, run_dir, *OVERRIDES, stop_at=110)
            t_resumed = _first_step_after_start(run_dir, proc, 100)
            if i:
                fresh.append(t_fresh)
                resumed.append(t_resumed)
    r, f = median(resumed), median(fresh)
    target, met = at_most(r / f, 1.2)
    return [Row("P7", "process start to first resumed step", r, f, "s", r / f, target, met, {"repeats": repeats})]
