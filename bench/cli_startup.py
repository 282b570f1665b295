"""Start-up time of the JAX-free commands, against `python -c "import jax"`.

Both sides are timed in this run, alternating, and reported as medians and the
ratio (the machines are noisy; a lone absolute time means little).

Both sides are timed with their bytecode cached, as after an install: JAX's
`.pyc` files come with it, and a warm-up run writes this checkout's even where
PYTHONDONTWRITEBYTECODE is set (otherwise every timed `exp` run would compile
its own modules from source, which no installed `exp` does).

    python bench/cli_startup.py [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXP = str(Path(sys.executable).with_name("exp"))
SPEC = str(ROOT / "examples" / "digits_mlp.toml")

COMMANDS = {
    "import jax": [sys.executable, "-c", "import jax"],
    "exp --help": [EXP, "--help"],
    "exp plan --json": [EXP, "plan", SPEC, "--json"],
    "exp validate": [EXP, "validate", SPEC],
}


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def _warm(argv: list[str]) -> None:
    """Run once, reading the files into the page cache and writing missing bytecode."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(argv, check=True, capture_output=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        _warm(argv)
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            samples[name].append(_time(argv))
    baseline = statistics.median(samples["import jax"])
    rows = {
        name: {"median_s": statistics.median(s), "ratio_to_import_jax": statistics.median(s) / baseline}
        for name, s in samples.items()
    }
    print(f"{'command':<18} {'median s':>9} {'/ import jax':>13}")
    for name, row in rows.items():
        print(f"{name:<18} {row['median_s']:>9.3f} {row['ratio_to_import_jax']:>13.2f}")
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
