"""P10: steps/s and peak memory of the digits run for several `throttle.max_inflight` values.

On CPU the device's memory is the host's, so the process's peak RSS covers
both. "unbounded" is the spec's ceiling, 1024 steps in flight. The `auto` row
shows the K the runtime chose from the compiled step's memory analysis.

Speed here is the whole process's: steps over its wall time, start-up included
(the same for every setting). A window between metrics records would flatter
large K: a step's record is written when the loop retires it, up to K steps
after it finished.
"""

from __future__ import annotations

from common import DIGITS, Row, exp_run, median, run_events, scratch

from expspec.runtime.runs.run_files import Event

SETTINGS = {"1": "1", "2 (default)": "2", "4": "4", "8": "8", "unbounded": "1024", "auto": '"auto"'}
STEPS = 1500


def _chosen(run_dir) -> int | None:
    return next((e["max_inflight"] for e in run_events(run_dir) if e["event"] == Event.THROTTLE), None)


def measure(repeats: int) -> list[Row]:
    rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
    rss: dict[str, list[float]] = {name: [] for name in SETTINGS}
    chosen = None
    with scratch("throttle") as work:
        for i in range(repeats):
            for name, value in SETTINGS.items():
                run_dir = work / f"{i}-{value.strip(chr(34))}"
                overrides = [f"train.steps={STEPS}", "train.eval_every=0", f"throttle.max_inflight={value}"]
                proc = exp_run(DIGITS, run_dir, *overrides)
                rates[name].append(STEPS / proc.seconds)
                rss[name].append(proc.peak_rss_bytes)
                if name == "auto":
                    chosen = _chosen(run_dir)
    base = median(rates["2 (default)"])
    rows = []
    for name in SETTINGS:
        r = median(rates[name])
        notes = {"peak_rss_bytes": median(rss[name]), "steps": STEPS, "speed": "whole process, start-up included"}
        if name == "auto":
            notes["chosen_max_inflight"] = chosen
        rows.append(Row("P10", f"max_inflight {name}", r, base, "steps/s", r / base, "table", None, notes))
    return rows
