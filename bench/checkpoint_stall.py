"""P3: how long one async checkpoint save of a ~100 MB state stalls training, against a sync save.

A digits MLP widened to three 2048-unit layers has 8.5M parameters: with Adam's
two moments the saved state is ~102 MB. Async and sync runs alternate.

Two figures per save:
- blocked: how long the training loop waited on the save (the `checkpoint_save`
  events: device copy, full hash, Orbax's save call). This is the stall the
  issue's P3 names, the extra wall time of the step that saves.
- slowdown: the window's wall time beyond what its steps take at the median
  step interval, per save. It also counts the background writer competing with
  training for the cores, which on a 2-core machine no async save can hide.
"""

from __future__ import annotations

from common import DIGITS, Row, at_most, exp_run, median, run_events, scratch, train_records

from expspec.runtime.runs.run_files import Event

EVERY, FIRST, STEPS = 10, 2, 45
"""Saves after steps 10, 20, 30 and 40 fall inside the window (2, 45]; the final one comes after it."""
WIDE = [
    "model.hidden=[2048,2048,2048]",
    "model.dropout=0.0",
    "train.eval_every=0",
    "train.log_every=1",
    f"train.steps={STEPS}",
    f"checkpoint.every_steps={EVERY}",
]


def _stall_per_save(run_dir) -> float:
    at = {r["step"]: r["time"] for r in train_records(run_dir)}
    typical = median([at[s + 1] - at[s] for s in range(FIRST, STEPS)])
    saves = len(range(EVERY, STEPS, EVERY))
    return (at[STEPS] - at[FIRST] - (STEPS - FIRST) * typical) / saves


def _blocked(run_dir) -> list[float]:
    events = run_events(run_dir)
    return [e["blocked_s"] for e in events if e["event"] == Event.CHECKPOINT_SAVE and e["step"] < STEPS]


def measure(repeats: int) -> list[Row]:
    stalls: dict[str, list[float]] = {"true": [], "false": []}
    blocked: dict[str, list[float]] = {"true": [], "false": []}
    with scratch("stall") as work:
        for i in range(repeats):
            for mode in stalls:
                run_dir = work / f"{mode}-{i}"
                exp_run(DIGITS, run_dir, *WIDE, f"checkpoint.async={mode}")
                stalls[mode].append(_stall_per_save(run_dir))
                blocked[mode].extend(_blocked(run_dir))
    a, s = median(blocked["true"]), median(blocked["false"])
    target, met = at_most(a / s, 0.10)
    notes = {
        "state_bytes": 102_000_000,
        "runs_per_mode": repeats,
        "saves_per_run": len(range(EVERY, STEPS, EVERY)),
        "slowdown_per_save_async_s": median(stalls["true"]),
        "slowdown_per_save_sync_s": median(stalls["false"]),
        "slowdown_ratio": median(stalls["true"]) / median(stalls["false"]),
    }
    return [Row("P3", "loop blocked by one async save, ~100 MB state", a, s, "s", a / s, target, met, notes)]
