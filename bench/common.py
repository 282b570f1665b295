"""What the benchmarks share: fresh `exp run` processes, rates from their metrics, result rows.

Every benchmark times both sides in the same invocation, alternating, and
reports medians and their ratio: on a shared 2-core machine a lone absolute
time means little, a ratio measured side by side does.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from expspec.exit_codes import ExitCode
from expspec.runtime.processes.child_command import exp_run_argv
from expspec.runtime.runs.records import read_jsonl
from expspec.runtime.runs.run_files import RunFiles

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DIGITS = EXAMPLES / "digits_mlp.toml"
TRANSFORMER = EXAMPLES / "char_transformer.toml"


@dataclass
class Row:
    """One benchmark figure: the measure, its baseline from the same run, and the target."""

    id: str
    measure: str
    value: float
    baseline: float
    unit: str
    ratio: float
    target: str
    met: bool | None
    """None where the issue sets no pass mark (a table to read, not a gate)."""
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_least(ratio: float, bound: float) -> tuple[str, bool]:
    return f">= {bound:g}", ratio >= bound


def at_most(ratio: float, bound: float) -> tuple[str, bool]:
    return f"<= {bound:g}", ratio <= bound


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"exp-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Process:
    """A finished child process: its wall time, peak RSS and output."""

    seconds: float
    peak_rss_bytes: int
    stdout: str
    started_at: float
    """`time.time()` just before the child was spawned (metrics records use the same clock)."""


def run_process(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> Process:
    """Run `argv` to completion. Its peak RSS comes from `wait4` on that child alone."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started_at, start = time.time(), time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env, text=True)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                child.kill()
                raise TimeoutError(f"{' '.join(map(str, argv))} ran past {timeout} s")
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode not in (ExitCode.OK, ExitCode.PREEMPTED):
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {child.returncode}: {stderr.strip()[-2000:]}")
    return Process(seconds, usage.ru_maxrss * 1024, stdout, started_at)


def exp_run(spec: Path, run_dir: Path, *overrides: str, stop_at: int | None = None) -> Process:
    """A fresh `exp run` process, quiet."""
    return run_process(exp_run_argv(spec, overrides, run_dir, stop_at=stop_at, quiet=True))


def train_records(run_dir: Path) -> list[dict[str, Any]]:
    """The run's training metrics records, in step order."""
    return [r for r in read_jsonl(RunFiles(run_dir).metrics) if r.get("split") == "train"]


def run_events(run_dir: Path) -> list[dict[str, Any]]:
    """The run's events, in the order they happened."""
    return read_jsonl(RunFiles(run_dir).events)


def rate_between(records: list[dict[str, Any]], first: int, last: int) -> float:
    """Steps/s from the record of step `first` to that of step `last` (wall clock of the run).

    A record is written when its step has finished on the device, so the window
    covers exactly the steps (first, last], checkpoints and all.
    """
    at = {r["step"]: r["time"] for r in records}
    missing = [s for s in (first, last) if s not in at]
    if missing:
        raise ValueError(f"no metrics record at step(s) {missing}; log_every must divide them")
    return (last - first) / (at[last] - at[first])


def format_value(value: float, unit: str) -> str:
    """A figure in its unit, scaled for reading."""
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    if unit == "bytes/s":
        return f"{value / 1e9:.2f} GB/s"
    if unit == "s/step":
        return f"{value * 1e3:.3f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.2f} {unit}"


def table(rows: Sequence[Row], note: Callable[[Row], str | None] = lambda row: None) -> str:
    """The rows as a plain-text table, each followed by its `note` line if it has one."""
    width = max([len("measure"), *(len(row.measure) for row in rows)])
    lines = [f"{'id':<4} {'measure':<{width}} {'value':>12} {'baseline':>12} {'ratio':>7}  {'target':<7} met"]
    for row in rows:
        met = {True: "yes", False: "NO", None: "-"}[row.met]
        lines.append(
            f"{row.id:<4} {row.measure:<{width}} {format_value(row.value, row.unit):>12} "
            f"{format_value(row.baseline, row.unit):>12} {row.ratio:>7.3f}  {row.target:<7} {met}"
        )
        extra = note(row)
        if extra:
            lines.append(f"{'':<4} {extra}")
    return "\n".join(lines)


def write_report(path: Path, script: str, rows: Sequence[Row], seconds: Any, **extra: Any) -> None:
    """The JSON report every bench writes: its command, the machine, the time and the rows."""
    report = {
        "command": " ".join(["python", script, *sys.argv[1:]]),
        **extra,
        "machine": {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform()},
        "seconds": seconds,
        "rows": [row.to_dict() for row in rows],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")


def not_measured(row_id: str, measure: str, unit: str, target: str, why: str) -> Row:
    """A row for a figure this run could not take (a missing tool): NaN values, no verdict, `why` in the measure."""
    nan = float("nan")
    return Row(row_id, f"{measure}: not measured ({why})", nan, nan, unit, nan, target, None, {"not_measured": why})
