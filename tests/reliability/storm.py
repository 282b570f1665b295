"""Kill storms: interrupt a real `exp run` again and again, restart it each time,
prove that each restart resumed where it had to, and compare the end with an
uninterrupted run, bit for bit.

    python -m tests.reliability.storm --kills 30 --signal KILL --seed 0

prints the figures the README quotes: kills survived mid-training, how many
landed while a checkpoint was being written, how many restarts resumed from a
checkpoint, and how many ledger records were compared.

Because training is deterministic, a run that silently restarted from step 0
ends on the same bits as one that resumed; so every restart is also checked
against the disk as it was when the previous attempt ended: its `resume` event
must name the newest checkpoint that had committed (Orbax's commit marker), or
it must `start` afresh when none had.
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
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.storm_evidence import (
    Attempt,
    Disk,
    attempts_begun,
    begin_problem,
    committed_steps,
    compare,
    look,
    unexplained_records,
    writing,
)
from tests.runtime.runs import DIGITS, EXP

EVERY = 10
KEEP = 3
STORM_ARGS = (str(DIGITS), f"checkpoint.every_steps={EVERY}", f"checkpoint.keep_last={KEEP}", "train.eval_every=0")
ATTEMPT_TIMEOUT = 120.0
"""Seconds an attempt may take to reach its kill; reaching it is a failure, not a kill."""
POLL = 0.002


def steps_for(kills: int) -> int:
    """A step budget that outlasts the kills: each advances the run by one or two checkpoints."""
    return EVERY * (2 * kills + 3)


@dataclass
class Reference:
    summary: dict
    run_dir: Path
    steps: int


@dataclass
class StormResult:
    signal: str
    seed: int
    kills: int
    survived: int = 0
    """Kills that landed mid-training (the attempt had trained a step and not finished)
    and ended the process as the signal must (-9 for SIGKILL, 75 for SIGTERM)."""
    during_write: int = 0
    """Kills that landed while a checkpoint write had started and not committed."""
    resumed: int = 0
    """Restarts (the final run included) that resumed from a checkpoint, where they had to."""
    step_records: int = 0
    checkpoint_records: int = 0
    checkpoints_on_disk: int = 0
    bits_equal: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bits_equal and self.survived == self.kills and not self.problems

    def line(self) -> str:
        head = (
            f"SIG{self.signal} storm (seed {self.seed}): {self.kills} kills, {self.survived} survived mid-training, "
            f"{self.during_write} while a checkpoint was being written, {self.resumed} restarts resumed from the "
            f"newest committed checkpoint; {self.step_records} step and {self.checkpoint_records} checkpoint ledger "
            f"records compared with an uninterrupted run, {self.checkpoints_on_disk} committed checkpoints compared "
            f"with their ledger records; final bits equal: {self.bits_equal}"
        )
        shown = self.problems[:12] + ([f"... {len(self.problems) - 12} more"] if len(self.problems) > 12 else [])
        return "\n  ".join([head, *shown])


def _last(stderr: str) -> str:
    """The last line a process wrote to stderr (its one-line error), shortened."""
    lines = stderr.strip().splitlines()
    return lines[-1][-300:] if lines else "(nothing on stderr)"


def _command(run_dir: Path, steps: int) -> list[str]:
    return [EXP, "run", *STORM_ARGS, f"train.steps={steps}", "--run-dir", str(run_dir), "-q"]


def reference(folder: Path, steps: int) -> Reference:
    """An uninterrupted run to compare storms against."""
    run_dir = folder / "straight"
    done = subprocess.run([*_command(run_dir, steps), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return Reference(json.loads(done.stdout), run_dir, steps)


def _ready(attempt: Attempt, run_dir: Path, aim: str, offset: int) -> bool:
    """Whether the moment aimed at has come: while a checkpoint is being written, at least
    a checkpoint interval past the start ("write"), or a few steps after a checkpoint
    of this attempt committed ("commit")."""
    start = attempt.start
    if start is None or attempt.reached <= start:
        return False
    if aim == "write":
        return attempt.reached >= start + EVERY + offset and writing(run_dir)
    newer = [s for s in committed_steps(run_dir) if s > start]
    return bool(newer) and attempt.reached >= newer[0] + offset


class _Storm:
    def __init__(self, folder: Path, sig: signal.Signals, seed: int, straight: Reference, kills: int) -> None:
        self.sig, self.straight = sig, straight
        self.run_dir = folder / f"storm-{sig.name}"
        self.result = StormResult(sig.name[3:], seed, kills)
        self.expected: int | None = None
        """Where the next attempt must begin: the newest committed checkpoint, or None (fresh)."""
        self.on_disk: dict[int, str | None] = {}
        """Every checkpoint seen committed when an attempt ended: step -> its recorded full hash."""

    def begun(self, attempt: Attempt) -> None:
        """Check where `attempt` began against the disk the previous attempt left."""
        problem = begin_problem(attempt, self.expected)
        if problem:
            self.result.problems.append(problem)
        elif self.expected is not None:
            self.result.resumed += 1

    def ended(self) -> None:
        """Read the disk once the attempt's process is gone: the ledger's checkpoint records
        must name committed checkpoints; the newest committed one is the next resume point."""
        disk = look(self.run_dir, KEEP)
        self.result.problems += unexplained_records(self.run_dir, disk, KEEP)
        for step, digest in disk.committed.items():
            if self.on_disk.setdefault(step, digest) != digest:
                self.result.problems.append(f"checkpoint {step} committed twice with different records")
        self.expected = disk.newest()

    def _send_when_ready(
        self, proc: subprocess.Popen[str], attempt: Attempt, aim: str, offset: int
    ) -> tuple[bool, Disk | None]:
        """Signal `proc` at the aimed moment: whether it was sent, and for SIGTERM (which
        lets writes finish) the disk just before (after SIGKILL it is read once the process is gone)."""
        deadline = time.monotonic() + ATTEMPT_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            attempt.update()
            if _ready(attempt, self.run_dir, aim, offset):
                disk = None if self.sig == signal.SIGKILL else look(self.run_dir, KEEP)
                proc.send_signal(self.sig)
                return True, disk
            time.sleep(POLL)
        return False, None

    def kill(self, i: int, aim: str, offset: int) -> None:
        """Start an attempt, signal it at the aimed moment, and judge what it left."""
        result, total = self.result, self.straight.steps
        attempt = Attempt(attempts_begun(self.run_dir), self.run_dir)
        proc = subprocess.Popen(
            _command(self.run_dir, total), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        sent, at_signal = self._send_when_ready(proc, attempt, aim, offset)
        saves = set(attempt.saves)
        late = not sent and proc.poll() is None
        if late:
            proc.kill()
        _, err = proc.communicate(timeout=ATTEMPT_TIMEOUT)
        attempt.update()
        self.begun(attempt)
        start = attempt.start if attempt.start is not None else 0
        if not sent:
            why = f"did not reach its kill in {ATTEMPT_TIMEOUT} s" if late else f"ended by itself ({proc.returncode})"
            result.problems.append(f"kill {i}: attempt {attempt.number} {why}: {_last(err)}")
            self.ended()
            return
        expected_code = -signal.SIGKILL if self.sig == signal.SIGKILL else 75
        mid_training = start < attempt.reached < total and attempt.ended in (None, "preempted")
        if mid_training and proc.returncode == expected_code:
            result.survived += 1
        else:
            result.problems.append(
                f"kill {i} ({aim}): attempt {attempt.number} from step {start} reached {attempt.reached}/{total}, "
                f"{attempt.ended or 'not ended'}, exit {proc.returncode}: {_last(err)}"
            )
        if at_signal is None:  # SIGKILL: the process is gone, the disk is exactly what the kill left
            at_signal, saves = look(self.run_dir, KEEP), attempt.saves
        result.during_write += at_signal.writing(saves, KEEP)
        self.ended()

    def finish(self) -> None:
        """The last, uninterrupted attempt; then every record against the reference and the disk."""
        result, run_dir = self.result, self.run_dir
        attempt = Attempt(attempts_begun(run_dir), run_dir)
        done = subprocess.run(
            [*_command(run_dir, self.straight.steps), "--json"], capture_output=True, text=True, timeout=600
        )
        attempt.update()
        if done.returncode != 0:
            result.problems.append(f"the final attempt exited {done.returncode}: {_last(done.stderr)}")
            return
        self.begun(attempt)
        self.ended()
        result.bits_equal = json.loads(done.stdout)["full_hash"] == self.straight.summary["full_hash"]
        comparison = compare(run_dir, self.straight.run_dir, self.on_disk, KEEP)
        result.step_records, result.checkpoint_records = comparison.step_records, comparison.checkpoint_records
        result.checkpoints_on_disk = comparison.checkpoints_on_disk
        result.problems += comparison.problems


def storm(folder: Path, kills: int, sig: signal.Signals, seed: int, straight: Reference) -> StormResult:
    """Interrupt a run `kills` times and restart it after each; the evidence, judged.

    Kills alternate between two aims: while a checkpoint is being written (from the
    first), and a few seeded steps after one of the attempt's checkpoints committed,
    so the storm both cuts writes short and leaves checkpoints to resume from.
    """
    rng = random.Random(seed)
    run = _Storm(folder, sig, seed, straight, kills)
    for i in range(kills):
        run.kill(i, "write" if i % 2 == 0 else "commit", rng.randrange(0, 4))
    run.finish()
    return run.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sig = signal.Signals[f"SIG{args.signal}"]
    with tempfile.TemporaryDirectory(prefix="exp-storm-") as tmp:
        folder = Path(tmp)
        result = storm(folder, args.kills, sig, args.seed, reference(folder, steps_for(args.kills)))
    print(result.line())
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
