"""Every benchmark of issue P1..P16 in one run: a table on stdout and the figures as JSON.

    python bench/run.py --quick          # about 13 minutes on 2 busy CPU cores (P14-P16 about 8)
    python bench/run.py                  # longer windows, more repeats
    python bench/run.py --only P1,P3     # a subset
    python bench/run.py --quick --tunix-python TUNIX_VENV/bin/python   # with the Tunix rows of P15, P16

P14 also gives P15's language-model row (the same runs); P15 alone is the
digits MLP. Without a Python that has Tunix (`--tunix-python` or
`$EXPSPEC_TUNIX_PYTHON`, see bench/tunix_trainer.py) the Tunix rows read
"not measured (no --tunix-python)".

Each figure is a ratio of two medians measured side by side in this run (see
the module of each benchmark for what exactly is timed). The JSON goes to
`--json` (default: bench/results.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checkpoint_stall  # noqa: E402
import hash_speed  # noqa: E402
import resume_start  # noqa: E402
import scale_out  # noqa: E402
import throttle_sweep  # noqa: E402
import throughput  # noqa: E402
import tunix_compare  # noqa: E402
from common import ROOT, Row, at_most, table, write_report  # noqa: E402


def _script_json(script: str, *args: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--json", str(out)], check=True)
        return json.loads(out.read_text())


def audit_cost(quick: bool, repeats: int) -> list[Row]:
    """P6, by bench/audit_cost.py: `exp audit` of N steps against one `exp run` of N steps."""
    steps = 40 if quick else 100
    row = _script_json("audit_cost.py", "--steps", str(steps), "--repeats", str(repeats))
    target, met = at_most(row["ratio"], 2.5)
    notes = {"steps": steps, "repeats": repeats}
    audit, plain = row["audit_s"], row["plain_run_s"]
    return [Row("P6", "exp audit vs one exp run", audit, plain, "s", row["ratio"], target, met, notes)]


TARGETED_P8 = ("exp --help", "exp plan --json")
"""The commands the 0.3 target is set for; validate, diff and runs take the same path and are reported beside them."""


def cli_startup(repeats: int) -> list[Row]:
    """P8, by bench/cli_startup.py: JAX-free commands against `python -c "import jax"`."""
    rows = _script_json("cli_startup.py", "--repeats", str(repeats))["rows"]
    base = rows["import jax"]["median_s"]
    out = []
    for name in ("exp --help", "exp plan --json", "exp validate", "exp diff", "exp runs"):
        value = rows[name]["median_s"]
        target, met = at_most(value / base, 0.3)
        if name not in TARGETED_P8:
            target, met = "", None
        out.append(Row("P8", name, value, base, "s", value / base, target, met))
    return out


def benchmarks(quick: bool, tunix: str | None = None) -> dict[str, Callable[[], list[Row]]]:
    r = 2 if quick else 3
    compared = tunix_compare.settings(quick)
    return {
        "P1": lambda: throughput.measure_training(quick, r),  # with P2, P5 and P9
        "P3": lambda: checkpoint_stall.measure(r),
        "P4": lambda: hash_speed.measure(5),
        "P6": lambda: audit_cost(quick, r),
        "P7": lambda: resume_start.measure(3 if quick else 5),
        "P8": lambda: cli_startup(5 if quick else 9),
        "P10": lambda: throttle_sweep.measure(1 if quick else 2),
        "P11": lambda: throughput.measure_long_run(quick),
        "P12": lambda: scale_out.measure_devices(quick, r),
        "P13": lambda: scale_out.measure_checkpoints(r),
        "P14": lambda: tunix_compare.measure_lm(tunix, **compared["lm"]),  # with P15's language-model row
        "P15": lambda: tunix_compare.measure_mlp(tunix, **compared["mlp"]),
        "P16": lambda: tunix_compare.measure_resume(tunix, **compared["resume"]),
    }


GROUPS = {"P2": "P1", "P5": "P1", "P9": "P1"}
"""Figures measured by another benchmark's runs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows and few repeats (~13 min on 2 cores)")
    parser.add_argument("--only", help="comma-separated ids, e.g. P1,P3 (P2, P5 and P9 come with P1)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--tunix-python", help="Python with google-tunix, for P15, P16 (or $EXPSPEC_TUNIX_PYTHON)")
    args = parser.parse_args()
    available = benchmarks(args.quick, tunix_compare.tunix_python(args.tunix_python))
    wanted = [GROUPS.get(i, i) for i in (args.only.split(",") if args.only else available)]
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        parser.error(f"unknown benchmark id(s): {', '.join(unknown)}")
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    for name in dict.fromkeys(wanted):
        began = time.perf_counter()
        rows.extend(available[name]())
        seconds[name] = time.perf_counter() - began
        print(f"[{name} done in {seconds[name]:.0f} s]", file=sys.stderr, flush=True)
    rows.sort(key=lambda row: int(row.id[1:]))
    print(table(rows))
    total = time.perf_counter() - start
    print(f"\n{len(rows)} figures in {total:.0f} s ({'quick' if args.quick else 'full'})")
    write_report(args.json, "bench/run.py", rows, {"total": total, **seconds}, mode="quick" if args.quick else "full")


if __name__ == "__main__":
    main()
