"""Start-up time of the JAX-free commands, against `python -c "import jax"`.

Both sides are timed in this run, alternating, and reported as medians and the
ratio (the machines are noisy; a lone absolute time means little).

`exp diff` compares the digits example with a variant that changes an
operational field, and `exp runs` lists three copies of the test suite's
finished run: both made in a temporary folder.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXP = str(Path(sys.executable).with_name("exp"))
SPEC = str(ROOT / "examples" / "digits_mlp.toml")
FINISHED_RUN = ROOT / "tests" / "cli" / "fixtures" / "report_run"


def commands(folder: Path) -> dict[str, list[str]]:
    """The command lines timed; `folder` receives what `exp diff` and `exp runs` read."""
    for name in ("digits_mlp.toml", "base.toml"):  # `extends` stays inside the spec's folder
        shutil.copy(ROOT / "examples" / name, folder / name)
    variant = folder / "variant.toml"
    variant.write_text('extends = "digits_mlp.toml"\n[train]\nlog_every = 7\n', encoding="utf-8")
    for name in ("a", "b", "c"):
        shutil.copytree(FINISHED_RUN, folder / "runs" / name)
    return {
        "import jax": [sys.executable, "-c", "import jax"],
        "exp --help": [EXP, "--help"],
        "exp plan --json": [EXP, "plan", SPEC, "--json"],
        "exp validate": [EXP, "validate", SPEC],
        "exp diff": [EXP, "diff", str(folder / "digits_mlp.toml"), str(variant)],
        "exp runs": [EXP, "runs", str(folder / "runs")],
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
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as folder:
        timed = commands(Path(folder))
        samples: dict[str, list[float]] = {name: [] for name in timed}
        for argv in timed.values():
            _warm(argv)
        for _ in range(args.repeats):
            for name, argv in timed.items():
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
