"""Progress for people: a rich bar on a terminal, periodic plain lines otherwise."""

from __future__ import annotations

import time
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from expspec.runtime.processes.quiet import terminal

__all__ = ["ProgressReport"]

Mode = Literal["auto", "bar", "lines", "quiet"]


class ProgressReport:
    """Step counter with loss and speed; O(1) work per update."""

    def __init__(self, total: int, start: int, mode: Mode = "auto", every: int = 10) -> None:
        out = terminal()
        self.console = Console(file=out, highlight=False, soft_wrap=True, emoji=False, markup=False)
        if mode == "auto":
            mode = "bar" if out.isatty() else "lines"
        self.mode = mode
        self.total, self.every = total, max(1, every)
        self._t0, self._s0 = time.perf_counter(), start
        self._bar: Progress | None = None
        if mode == "bar":
            self._bar = Progress(
                TextColumn("step"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._bar.add_task("train", total=total, completed=start, status="")
            self._bar.start()

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self._t0
        return (step - self._s0) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, loss: float) -> None:
        status = f"loss {loss:.4f}  {self.rate(step):.1f} steps/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, status=status)
        elif self.mode == "lines" and (step % self.every == 0 or step == self.total):
            self.console.print(f"step {step}/{self.total}  {status}", markup=False)

    def note(self, text: str) -> None:
        if self.mode != "quiet":
            self.console.print(text, markup=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
