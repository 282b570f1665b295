"""Where the resume check cuts a run, and proof that each cut was resumed from a checkpoint.

The cuts share one cadence: a checkpoint every `cut_interval` steps lands on
every cut and nowhere between two cuts. A run killed once the checkpoint at a
cut has committed, and before the next one does, must resume exactly there;
an attempt that began anywhere else resumed nothing the check can trust.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["cut_interval", "cut_points", "describe_steps", "resume_problem", "resumed_at"]


def cut_interval(steps: int, cuts: int) -> int:
    """The spacing of the cuts, and the checkpoint cadence of a killed run."""
    return max(1, steps // (cuts + 1))


def cut_points(steps: int, cuts: int) -> list[int]:
    """Up to `cuts` steps strictly inside (0, steps), multiples of `cut_interval`."""
    every = cut_interval(steps, cuts)
    return [every * i for i in range(1, cuts + 1) if every * i < steps]


def resumed_at(run_dir: Path) -> list[int]:
    """The step each later attempt in `run_dir` began at (0: it started fresh)."""
    from expspec.runtime.runs.records import iter_jsonl
    from expspec.runtime.runs.run_files import BEGINS, Event, RunFiles

    begins = [
        int(event.get("step", 0)) if event["event"] == Event.RESUME else 0
        for event in iter_jsonl(RunFiles(run_dir).events)
        if event.get("event") in BEGINS
    ]
    return begins[1:]


def resume_problem(cuts: Sequence[int], resumed: Sequence[int], run_dir: Path) -> str | None:
    """Why the attempts after `cuts` did not each resume from a checkpoint at or before
    their cut (None when they all did): then nothing after the cut proves resumption."""
    if len(resumed) != len(cuts):
        return f"{run_dir} holds {len(resumed)} resumed attempts for {len(cuts)} cuts ({list(cuts)})"
    for cut, step in zip(cuts, resumed, strict=True):
        if step == 0:
            return (
                f"the attempt after the cut at step {cut} started fresh from step 0: it restored no "
                f"checkpoint, although one at or before step {cut} had committed ({run_dir})"
            )
        if step > cut:
            return f"the attempt after the cut at step {cut} resumed at step {step}, past the cut ({run_dir})"
    return None


def describe_steps(steps: Iterable[int], limit: int = 8) -> str:
    """`steps 0-20`, `steps 0, 10`, `step 5` or `no steps`: what a run recorded, briefly."""
    ordered = sorted(set(steps))
    if not ordered:
        return "no steps"
    runs: list[tuple[int, int]] = []
    for step in ordered:
        if runs and step == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], step)
        else:
            runs.append((step, step))
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    more = ", ..." if len(runs) > limit else ""
    noun = "step" if len(ordered) == 1 else "steps"
    return f"{noun} {', '.join(parts)}{more}"
