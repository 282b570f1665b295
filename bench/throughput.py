"""Training speed against the hand-written loop: P1, P2, P5, P9 and P11.

P1   steps/s of `exp run` at default settings (throttle 2, fingerprints in the
     ledger every step, async checkpoints every 100 steps) / the hand-written loop;
     for the digits MLP also with the checkpoints written in the training process
     (`checkpoint.writer=thread`, the way before the writer process), by the clock
     (`checkpoint.every_seconds=30`) and without checkpoints
P2   the hand-written loop syncing every step (`float(loss)`) / `exp run`
P5   step time of `exp run` with per-step fingerprints / without (`ledger_every` large)
P9   peak RSS of `exp run` / the hand-written loop's process
P11  steps/s of one long run around step 10,000 / around step 100

Each side is a fresh process; steps [0, first) are untimed (compilation, warm-up),
steps (first, last] are timed. Evaluation is set to the end of the run so that
both sides do the same work inside the window.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from common import (
    DIGITS,
    ROOT,
    TRANSFORMER,
    Row,
    at_least,
    at_most,
    exp_run,
    median,
    rate_between,
    run_process,
    scratch,
    train_records,
)

HANDWRITTEN = [sys.executable, str(ROOT / "bench" / "handwritten.py")]


@dataclass(frozen=True)
class Workload:
    name: str
    spec: Path
    first: int
    last: int
    log_every: int

    def overrides(self, *extra: str) -> list[str]:
        return [f"train.steps={self.last}", "train.eval_every=0", f"train.log_every={self.log_every}", *extra]


def workloads(quick: bool) -> list[Workload]:
    return [
        Workload("digits MLP", DIGITS, 200, 2000 if quick else 5000, 10),
        # About 8 steps/s on 2 cores: the quick window is short but still covers
        # the steady state (a checkpoint at step 100 falls in the full one).
        Workload("char transformer", TRANSFORMER, 5, 30 if quick else 250, 5),
    ]


def _handwritten(w: Workload) -> tuple[dict, int]:
    proc = run_process([*HANDWRITTEN, str(w.spec), "--first", str(w.first), "--last", str(w.last)])
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.peak_rss_bytes


def _exp(w: Workload, work: Path, tag: str, *extra: str) -> tuple[float, int]:
    run_dir = work / tag
    proc = exp_run(w.spec, run_dir, *w.overrides(*extra))
    return rate_between(train_records(run_dir), w.first, w.last), proc.peak_rss_bytes


CHECKPOINT_VARIANTS = {
    "checkpoints in process (writer=thread)": ["checkpoint.writer=thread"],
    "checkpoints by the clock (every_seconds=30)": ["checkpoint.every_steps=0", "checkpoint.every_seconds=30"],
    "no checkpoints": ["checkpoint.enabled=false"],
}
"""Other checkpoint settings measured beside the default on the digits MLP, where Orbax's cost per save shows."""


def measure_training(quick: bool, repeats: int) -> list[Row]:
    rows: list[Row] = []
    for w in workloads(quick):
        hand, naive, exp, unhashed, rss_hand, rss_exp = [], [], [], [], [], []
        variants: dict[str, list[float]] = {name: [] for name in CHECKPOINT_VARIANTS if w.spec == DIGITS}
        with scratch("throughput") as work:
            for i in range(repeats):
                out, rss = _handwritten(w)
                hand.append(out["steps_per_s"])
                naive.append(out["sync_steps_per_s"])
                rss_hand.append(rss)
                rate, rss = _exp(w, work, f"default-{i}")
                exp.append(rate)
                rss_exp.append(rss)
                unhashed.append(_exp(w, work, f"unhashed-{i}", f"train.ledger_every={10**9}")[0])
                for j, name in enumerate(variants):
                    variants[name].append(_exp(w, work, f"variant-{j}-{i}", *CHECKPOINT_VARIANTS[name])[0])
        e, h, n, u = median(exp), median(hand), median(naive), median(unhashed)
        window = {"steps": f"({w.first}, {w.last}]", "repeats": repeats}
        target, met = at_least(e / h, 0.95)
        rows.append(Row("P1", f"exp run steps/s, {w.name}", e, h, "steps/s", e / h, target, met, window))
        for name, rates in variants.items():
            v = median(rates)
            rows.append(Row("P1", f"exp run steps/s, {w.name}, {name}", v, h, "steps/s", v / h, "", None, window))
        rows.append(Row("P2", f"naive synced loop vs exp run, {w.name}", e, n, "steps/s", e / n, "> 1", e > n, window))
        target, met = at_most(u / e, 1.02)
        p5 = Row("P5", f"fingerprint cost per step, {w.name}", 1 / e, 1 / u, "s/step", u / e, target, met, window)
        rows.append(p5)
        if w.spec == DIGITS:
            r_e, r_h = median(rss_exp), median(rss_hand)
            target, met = at_most(r_e / r_h, 1.15)
            rows.append(Row("P9", f"peak RSS, {w.name}", r_e, r_h, "bytes", r_e / r_h, target, met, window))
    return rows


def measure_long_run(quick: bool) -> list[Row]:
    """P11: one digits run of 10,100 steps; the rate around step 10,000 against around step 100."""
    w = Workload("digits MLP", DIGITS, 100, 10_100, 10)
    with scratch("long") as work:
        exp_run(w.spec, work / "long", *w.overrides())
        records = train_records(work / "long")
    early, late = rate_between(records, 100, 600), rate_between(records, 9_600, 10_100)
    target, met = at_least(late / early, 0.95)
    notes = {"early": "(100, 600]", "late": "(9600, 10100]"}
    return [Row("P11", "steps/s at step 10,000 vs step 100", late, early, "steps/s", late / early, target, met, notes)]
