"""Preemption: SIGTERM or SIGINT asks the loop to stop at the next step boundary.

The handler only sets a flag; the loop finishes the step it is on, saves, waits
for the writes to commit and exits 75 (resumable). A second SIGINT means the
person at the keyboard wants out now: exit at once, without saving.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

__all__ = ["EXIT_PREEMPTED", "PreemptionGuard"]

EXIT_PREEMPTED = 75


class PreemptionGuard:
    """Context manager installing the handlers; `requested` names the signal received."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            os._exit(130)
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> PreemptionGuard:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def reclaim(self) -> None:
        """Take the signals back from a library that installed its own handlers:
        `jax.distributed.initialize` starts a preemption notifier that swallows SIGTERM."""
        for sig in self._previous:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
