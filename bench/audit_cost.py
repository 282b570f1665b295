"""The audit's cost: `exp audit SPEC --steps N` against one plain `exp run` of N steps.

Both are timed in this run, alternating, as fresh processes with a warm
compilation cache, and reported as medians and their ratio (target <= 2.5:
the audit runs 2N steps in three processes, two of them concurrently).

    python bench/audit_cost.py [--steps 40] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from expspec.runtime.processes.child_command import exp_argv, exp_run_argv

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "examples" / "digits_mlp.toml")


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(steps: int, repeats: int) -> dict[str, float]:
    plain, audit = [], []
    work = Path(tempfile.mkdtemp(prefix="exp-bench-audit-"))
    try:
        for i in range(repeats + 1):  # the first round warms the compilation cache
            run_dir = work / f"plain-{i}"
            t_plain = _timed(exp_run_argv(SPEC, (), run_dir, stop_at=steps, quiet=True))
            t_audit = _timed(exp_argv("audit", SPEC, "--steps", str(steps)))
            if i:
                plain.append(t_plain)
                audit.append(t_audit)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p, a = statistics.median(plain), statistics.median(audit)
    return {"steps": steps, "repeats": repeats, "plain_run_s": p, "audit_s": a, "ratio": a / p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    row = measure(args.steps, args.repeats)
    print(f"{'N':>4} {'exp run (s)':>12} {'exp audit (s)':>14} {'audit / run':>12}   target <= 2.5")
    print(f"{row['steps']:>4} {row['plain_run_s']:>12.2f} {row['audit_s']:>14.2f} {row['ratio']:>12.2f}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
