"""Preemption: SIGTERM or SIGINT asks the run to stop at the next point it can stop cleanly.

The handler only sets a flag; the loop finishes the step it is on, saves, waits
for the writes to commit and exits PREEMPTED (resumable). A signal that arrived before
the guard existed counts too: `exp` records signals from its first line
(expspec/cli/early_signals.py) and the guard adopts what that handler recorded, so
a preemption while the run starts ends as preempted as well. A second SIGINT
means the person at the keyboard wants out now: exit INTERRUPTED at once, without saving.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any, NoReturn

from expspec.exit_codes import ExitCode
from expspec.runtime.processes.quiet import terminal

__all__ = ["PreemptionGuard", "hand_back", "recorded_signal"]


def _owner(handler: object) -> object:
    return getattr(handler, "__self__", handler)  # a bound method's object


def recorded_signal(handler: object) -> str | None:
    """The signal that a recording handler (one with a `requested` attribute: exp's
    start-up handler, a guard, the launcher's) received, if any."""
    requested = getattr(_owner(handler), "requested", None)
    return requested if isinstance(requested, str) else None


def hand_back(handler: object, requested: str | None) -> None:
    """Tell a recording handler that is being put back what arrived meanwhile, so
    that a SIGINT it gets next counts as the second."""
    owner: Any = _owner(handler)
    if requested and hasattr(owner, "requested") and owner.requested is None:
        owner.requested = requested


def _exit_now() -> NoReturn:
    """Exit INTERRUPTED without unwinding (the handler may run inside any code) or saving; said
    on the terminal, which a live run's fd 2 is not (it goes to stderr.log)."""
    try:
        os.write(terminal().fileno(), b"\ninterrupted again: stopped at once, nothing saved\n")
    except (OSError, ValueError):
        pass
    os._exit(ExitCode.INTERRUPTED)


class PreemptionGuard:
    """Context manager installing the handlers; `requested` names the signal received
    (since the process started, when `exp` recorded one before the guard)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            _exit_now()
        self.requested = self.requested or signal.Signals(signum).name

    def __enter__(self) -> PreemptionGuard:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = previous = signal.signal(sig, self._handle)
            self.requested = self.requested or recorded_signal(previous)
        return self

    def reclaim(self) -> None:
        """Take the signals back from a library that installed its own handlers."""
        for sig in self._previous:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
            hand_back(handler, self.requested)
