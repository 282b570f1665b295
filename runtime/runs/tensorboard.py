"""TensorBoard scalars beside `metrics.jsonl` (`[logging] tensorboard = true`).

`metrics.jsonl` stays the record; the event files are a view of it for
TensorBoard. The writer wraps the metrics file with the same `write`/`close`
interface, so the loop does not know it exists, and every record reaches both:
`{"split": "train", "step": 40, "loss": ...}` becomes the scalar `train/loss`
at step 40. tensorboardX is an optional dependency, imported only when the
spec asks for it; this module itself imports nothing heavy, so a run can be
refused for its absence before anything starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from expspec.errors import BadInput
from expspec.runtime.runs.records import JsonLines
from expspec.runtime.runs.run_files import TENSORBOARD

__all__ = ["FOLDER", "TensorBoardMetrics", "TensorBoardMissing", "require_tensorboard"]

FOLDER = TENSORBOARD
"""The event files' folder inside the run directory."""

FLUSH_S = 10
"""How often the writer's thread flushes: a live run shows up within seconds, and a
SIGKILL loses at most this much of the view (never of `metrics.jsonl`)."""

_NOT_SCALARS = frozenset({"step", "split", "time"})


class TensorBoardMissing(BadInput):
    """The spec asks for TensorBoard files and tensorboardX is not installed."""


def require_tensorboard() -> None:
    """Raise `TensorBoardMissing` unless tensorboardX can be imported (without importing it)."""
    if importlib.util.find_spec("tensorboardX") is None:
        raise TensorBoardMissing(
            "logging.tensorboard: is true but tensorboardX is not installed; "
            "install it with pip install 'expspec[tensorboard]' (or pip install tensorboardX), "
            "or set logging.tensorboard = false"
        )


class TensorBoardMetrics(JsonLines):
    """`metrics.jsonl` plus an event file: every record written to one is written to both.

    `purge_from` is the first step this attempt will record when it resumes a run:
    TensorBoard then hides what an earlier attempt recorded from that step on (steps
    after its last checkpoint, which this attempt computes again and records anew).
    """

    def __init__(self, metrics: JsonLines, folder: Path, purge_from: int | None = None) -> None:
        require_tensorboard()
        from tensorboardX import SummaryWriter

        self.path = metrics.path
        self._metrics = metrics
        # tensorboardX names files by the second and the host, and opens them with "wb":
        # the pid keeps two attempts within one second from overwriting each other's file.
        suffix = f".{os.getpid()}"
        self._writer = SummaryWriter(
            logdir=str(folder), purge_step=purge_from, flush_secs=FLUSH_S, filename_suffix=suffix
        )

    def write(self, record: dict[str, Any]) -> None:
        self._metrics.write(record)  # the record first: the view may lag it, never lead it
        split, step, walltime = record.get("split", "train"), record.get("step"), record.get("time")
        for name, value in record.items():
            if name in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self._writer.add_scalar(f"{split}/{name}", value, global_step=step, walltime=walltime)

    def close(self) -> None:
        self._metrics.close()
        self._writer.close()  # flushes what the writer's thread still holds
