"""Kills at the very end: after the final checkpoint commits, before the run records its end.

    python -m tests.reliability.end_kills --trials 10 --signal KILL

Each trial trains the character transformer to its last step, signals it as
soon as the final checkpoint has committed (while the final evaluation runs),
then runs the same command again. The second attempt must finish the run: exit
0, outcome "finished", the final evaluation, a `finished` event, `exp runs`
saying "done", and the final full hash of an uninterrupted run. A trial whose
signal landed after the run had already recorded its end proves nothing about
the window and is counted apart ("missed").
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.runtime.runs import EXP, SMALL_TRANSFORMER, TRANSFORMER, events, run_json, start, wait_for_commit

STEPS = 8
ARGS = (str(TRANSFORMER), *SMALL_TRANSFORMER, f"train.steps={STEPS}", "train.eval_every=0", "checkpoint.every_steps=4")


@dataclass
class Tally:
    trials: int = 0
    in_window: int = 0
    """Signals that landed after the final commit and before the `finished` record."""
    missed: int = 0
    finished_next: int = 0
    """In-window trials whose next attempt finished with the evaluation and the reference bits."""
    problems: list[str] | None = None


def _trial(folder: Path, sig: signal.Signals, reference: str, tally: Tally) -> None:
    run_dir = folder / f"trial-{tally.trials}"
    tally.trials += 1
    proc = start(*ARGS, "--run-dir", str(run_dir))
    try:
        wait_for_commit(run_dir, STEPS, proc)
    except AssertionError:  # it ended before the final commit was seen: counted as missed below
        pass
    finally:
        proc.send_signal(sig)
        proc.communicate(timeout=120)
    if any(e.get("event") == "finished" for e in events(run_dir)):
        tally.missed += 1
        return
    tally.in_window += 1
    summary = run_json(*ARGS, "--run-dir", str(run_dir), "--quiet")
    listed = subprocess.run([EXP, "runs", str(run_dir), "--json"], capture_output=True, text=True, check=True)
    [status] = json.loads(listed.stdout)["runs"]
    ends = [e for e in events(run_dir) if e.get("event") == "finished"]
    why = []
    if summary.get("outcome") != "finished" or not summary.get("eval"):
        why.append(f"outcome {summary.get('outcome')!r}, eval {summary.get('eval')!r}")
    if summary.get("full_hash") != reference:
        why.append(f"final hash {summary.get('full_hash')} != {reference}")
    if len(ends) != 1 or status["status"] != "done":
        why.append(f"{len(ends)} finished events, `exp runs` says {status['status']!r}")
    if why:
        assert tally.problems is not None
        tally.problems.append(f"{run_dir.name} ({sig.name}, exit {proc.returncode}): " + "; ".join(why))
    else:
        tally.finished_next += 1


def drill(trials: int, sig: signal.Signals, folder: Path) -> Tally:
    reference = run_json(*ARGS, "--run-dir", str(folder / "reference"), "--quiet")["full_hash"]
    tally = Tally(problems=[])
    for _ in range(trials):
        _trial(folder, sig, reference, tally)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--signal", choices=("KILL", "TERM"), default="KILL")
    args = parser.parse_args(argv)
    sig = signal.Signals[f"SIG{args.signal}"]
    with tempfile.TemporaryDirectory(prefix="exp-end-kills-") as folder:
        tally = drill(args.trials, sig, Path(folder))
    print(
        f"{sig.name}: {tally.trials} trials, {tally.in_window} landed after the final commit and before the "
        f"end was recorded ({tally.missed} after it); the next attempt finished {tally.finished_next} of "
        f"{tally.in_window} with the final evaluation, a finished record and the uninterrupted run's bits"
    )
    for problem in tally.problems or []:
        print(f"  problem: {problem}")
    return 0 if not tally.problems and tally.in_window else 1


if __name__ == "__main__":
    sys.exit(main())
