"""SIGTERM and SIGINT from the first line of `exp`, before the heavy imports.

Until a handler is installed, Python ends a process on SIGTERM and turns SIGINT
into a KeyboardInterrupt traceback, and `exp run` spends its first second
importing typer, pydantic and JAX before the runtime's `PreemptionGuard` takes
over. Orchestrators preempt at any moment, so `main` calls `install` before it
imports anything else:

- `exp run` and `exp launch` get a `StartupSignals` handler, which only records
  the first signal. The guard (runtime/processes/signals.py), or the launcher's
  supervision, adopts what it recorded and stops at the first point the run can
  stop cleanly (exit PREEMPTED). A second SIGINT exits INTERRUPTED at once. Once the command
  has ended and every exit handler has run, both signals are ignored: Python
  puts the default handlers back while it finalizes, and a signal then (a
  launcher forwarding SIGTERM to a member that just finished) would turn a
  clean exit into a death by the signal.
- Other commands hold nothing worth saving: SIGTERM keeps its default, and
  Ctrl-C unwinds quietly to `main`, which exits INTERRUPTED (no traceback).

A supervisor (`exp launch`, a sweep) starts `exp` with both signals blocked, so
that a signal sent while the interpreter itself starts waits for the handler;
`install` unblocks them once the handler is in place.

Standard library only (and expspec.exit_codes, which is): this module runs before
anything else is imported.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from expspec.exit_codes import ExitCode

__all__ = [
    "RECORDING_COMMANDS",
    "Interrupted",
    "StartupSignals",
    "command_of",
    "exit_now",
    "install",
]

RECORDING_COMMANDS = frozenset({"run", "launch"})
"""Commands that turn a signal into a clean stop (exit PREEMPTED) instead of ending at once."""
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StartupSignals:
    """The handler of `exp run` and `exp launch` until the runtime takes over.

    `requested` names the first signal received; whoever installs the next
    handler adopts it (and hands back what it received when it puts this one back).
    """

    def __init__(self) -> None:
        self.requested: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            exit_now()
        self.requested = self.requested or signal.Signals(signum).name


class Interrupted(BaseException):
    """Ctrl-C in a command with nothing to save; `main` turns it into exit INTERRUPTED.

    Not a KeyboardInterrupt: click would print "Aborted!" and exit 1, and no
    `except Exception` may swallow it on its way up (finally blocks still run)."""


def exit_now() -> NoReturn:
    """A second Ctrl-C: the person wants out now. Exit INTERRUPTED without unwinding (a
    handler may run inside any code) and without saving."""
    try:
        os.write(2, b"\ninterrupted again: stopped at once, nothing saved\n")
    except OSError:
        pass
    os._exit(ExitCode.INTERRUPTED)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, lambda *_: exit_now())
    raise Interrupted


def _ignore_signals() -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that is not an option (exp's
    own options, --version and --help, take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def install(argv: Sequence[str]) -> StartupSignals | None:
    """Set the process's SIGTERM and SIGINT handling for the command `argv` names;
    the recording handler for `exp run` and `exp launch`, else None."""
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set handlers: the caller keeps its own
    recorder = None
    if command_of(argv) in RECORDING_COMMANDS:
        recorder = StartupSignals()
        for sig in SIGNALS:
            signal.signal(sig, recorder)
        atexit.register(_ignore_signals)  # registered first: runs after every other exit handler
    else:
        signal.signal(signal.SIGINT, _interrupt)
    # Delivered here if one arrived while blocked by the supervisor that started us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    return recorder
