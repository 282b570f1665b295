"""Corruption drills: damage the latest checkpoint of a real run in a random way,
run again, and check the damage is detected and the run still ends on the right bits.

    python -m tests.reliability.corrupt --count 20 --seed 0

prints the figures the README quotes (corruptions injected, detected, and runs
that still ended bitwise equal to an uninterrupted one).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.runtime.runs import DIGITS, exp, ledger, run_json

ARGS = (str(DIGITS), "train.steps=40", "checkpoint.every_steps=10", "checkpoint.keep_last=10", "train.eval_every=0")
DAMAGE = ("flip a bit", "zero a block", "truncate", "empty a file", "delete a file")


@dataclass
class DrillResult:
    injected: int
    rejected: int
    """Damage that changed the restored state: caught by the hash, checkpoint set aside."""
    intact: int
    """Damage Orbax never read (the restored state still matched its recorded hash)."""
    equal: int
    kinds: dict[str, int]
    failures: list[str] = field(default_factory=list)
    """Drills that neither fell back nor verified intact: what the rerun said."""

    @property
    def trained_on_corrupt_state(self) -> int:
        return self.injected - self.rejected - self.intact

    def line(self, seed: int) -> str:
        return (
            f"corruption drills (seed {seed}): {self.injected} damaged checkpoints "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(self.kinds.items()))}); "
            f"{self.rejected} rejected by the hash check and set aside, {self.intact} verified intact, "
            f"{self.trained_on_corrupt_state} trained on; "
            f"runs ending bitwise equal to an uninterrupted run: {self.equal}/{self.injected}"
        )


def damage(folder: Path, rng: random.Random) -> str:
    """Damage one array file of a checkpoint; return what was done."""
    files = sorted(
        p
        for p in (folder / "state").rglob("*")
        if p.is_file() and p.stat().st_size > 0 and p.name != "commit_success.txt"
    )
    victim = rng.choice(files)
    kind = rng.choice(DAMAGE)
    raw = bytearray(victim.read_bytes())
    at = rng.randrange(len(raw))
    if kind == "flip a bit":
        raw[at] ^= 1 << rng.randrange(8)
    elif kind == "zero a block":
        raw[at : at + 64] = bytes(len(raw[at : at + 64]))
    elif kind == "truncate":
        del raw[at:]
    elif kind == "empty a file":
        raw = bytearray()
    if kind == "delete a file":
        victim.unlink()
    else:
        victim.write_bytes(bytes(raw))
    return kind


def drill(folder: Path, count: int, seed: int) -> DrillResult:
    rng = random.Random(seed)
    straight = run_json(*ARGS, "--run-dir", str(folder / "straight"))
    result = DrillResult(0, 0, 0, 0, {})
    for i in range(count):
        run_dir = folder / f"drill-{i}"
        run_json(*ARGS, "--stop-at", "30", "--run-dir", str(run_dir))
        kind = damage(run_dir / "checkpoints" / "30", rng)
        result.injected += 1
        result.kinds[kind] = result.kinds.get(kind, 0) + 1
        again = exp("run", *ARGS, "--run-dir", str(run_dir), "--json", "-q")
        events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
        rejected = any(e["event"] == "checkpoint_rejected" and e["step"] == 30 for e in events)
        intact = any(e["event"] == "resume" and e["step"] == 30 for e in events)
        result.rejected += rejected
        result.intact += intact
        if not (rejected or intact) or again.returncode:
            result.failures.append(f"drill {i} ({kind}): exit {again.returncode}: {again.stderr.strip()[-300:]}")
        if again.returncode == 0 and json.loads(again.stdout)["full_hash"] == straight["full_hash"]:
            result.equal += ledger(run_dir) == ledger(folder / "straight")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exp-corrupt-") as tmp:
        result = drill(Path(tmp), args.count, args.seed)
    print(result.line(args.seed))
    for failure in result.failures:
        print(failure)
    sys.exit(0 if result.trained_on_corrupt_state == 0 and result.equal == result.injected else 1)


if __name__ == "__main__":
    main()
