"""Kill storms: interrupt a real `exp run` again and again, restart it each time,
and compare the end with an uninterrupted run, bit for bit.

    python -m tests.reliability.storm --kills 30 --signal KILL --seed 0

prints the figures the README quotes (kills survived, how many landed while an
asynchronous checkpoint was being written, whether the bits matched).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.runtime.runs import DIGITS, EXP, ledger

EVERY = 10
STORM_ARGS = (str(DIGITS), f"checkpoint.every_steps={EVERY}", "checkpoint.keep_last=3", "train.eval_every=0")


@dataclass
class StormResult:
    seed: int
    kills: int
    survived: int
    during_async_write: int
    exit_codes: list[int]
    final_hash: str
    ledger_equal: bool

    def line(self, sig: str) -> str:
        return (
            f"SIG{sig} storm (seed {self.seed}): kills survived {self.survived}/{self.kills}, "
            f"{self.during_async_write} while an async checkpoint was being written; "
            f"final bits and every ledger entry equal to an uninterrupted run: {self.ledger_equal}"
            + (f"; unexpected exit codes {sorted(set(self.exit_codes))}" if self.survived < self.kills else "")
        )


def _reached(run_dir: Path) -> int:
    path = run_dir / "ledger.jsonl"
    if not path.exists():
        return -1
    steps = [json.loads(x)["step"] for x in path.read_text().splitlines() if x.endswith("}") and '"kind":"step"' in x]
    return max(steps, default=-1)


def _run(run_dir: Path, steps: int) -> dict:
    done = subprocess.run(
        [EXP, "run", *STORM_ARGS, f"train.steps={steps}", "--run-dir", str(run_dir), "--json", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def reference(folder: Path, steps: int) -> tuple[dict, Path]:
    """An uninterrupted run to compare storms against."""
    run_dir = folder / "straight"
    return _run(run_dir, steps), run_dir


def storm(folder: Path, kills: int, sig: signal.Signals, seed: int, straight: tuple[dict, Path]) -> StormResult:
    """Interrupt a run `kills` times at seeded moments, each just after a checkpoint step."""
    rng = random.Random(seed)
    steps = EVERY * (kills + 2)
    run_dir = folder / f"storm-{sig.name}"
    codes, during_write = [], 0
    for i in range(kills):
        # Aim a few steps past a checkpoint step: the async write is then often still running.
        target = EVERY * (i + 1) + rng.randrange(0, 4)
        proc = subprocess.Popen(
            [EXP, "run", *STORM_ARGS, f"train.steps={steps}", "--run-dir", str(run_dir), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 300
        while _reached(run_dir) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(sig)
        proc.communicate(timeout=300)
        codes.append(proc.returncode)
        during_write += any(
            p.name.split(".")[-1].startswith("orbax-checkpoint-tmp") for p in (run_dir / "checkpoints").glob("*")
        )
    summary = _run(run_dir, steps)
    expected = -signal.SIGKILL if sig == signal.SIGKILL else 75
    survived = sum(code == expected for code in codes)
    equal = summary["full_hash"] == straight[0]["full_hash"] and ledger(run_dir) == ledger(straight[1])
    return StormResult(seed, kills, survived, during_write, codes, summary["full_hash"], equal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sig = signal.Signals[f"SIG{args.signal}"]
    with tempfile.TemporaryDirectory(prefix="exp-storm-") as tmp:
        folder = Path(tmp)
        result = storm(folder, args.kills, sig, args.seed, reference(folder, EVERY * (args.kills + 2)))
    print(result.line(args.signal))
    sys.exit(0 if result.ledger_equal and result.survived == result.kills else 1)


if __name__ == "__main__":
    main()
