"""Errors of background threads go to the run's records, not the terminal.

When a checkpoint write fails (a full disk), Orbax's writer threads log
through absl and raise in their own threads; the main thread learns of it at
the next save or wait and reports it in one line. Without this, the same
failure would also print dozens of log lines and thread tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

__all__ = ["NativeStderrToFile", "background_errors_captured", "terminal"]

_NOISY = ("absl", "asyncio", "orbax")


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}"[:2000])


@contextmanager
def background_errors_captured(sink: list[str]) -> Iterator[None]:
    """Collect warnings of noisy libraries and uncaught thread exceptions into `sink`."""
    handler = _Collect(sink)
    saved = []
    for name in _NOISY:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    previous_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        sink.append(f"thread {getattr(args.thread, 'name', '?')}: {text}"[:4000])

    previous_unraisable = sys.unraisablehook

    def unraisable(args: sys.UnraisableHookArgs) -> None:
        sink.append(f"unraisable in {args.object!r}: {args.exc_type.__name__}: {args.exc_value}"[:2000])

    threading.excepthook = hook
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        threading.excepthook = previous_hook
        sys.unraisablehook = previous_unraisable
        for logger, propagate, level in saved:
            logger.removeHandler(handler)
            logger.propagate, logger.level = propagate, level


_TERMINAL: TextIO | None = None


def terminal() -> TextIO:
    """Where output for people goes: the real stderr, even while a run redirects it."""
    return _TERMINAL or sys.stderr


class NativeStderrToFile:
    """While a run is live, stderr (fd 2 and `sys.stderr`) goes to a log file.

    When a checkpoint write fails, TensorStore callbacks and Orbax threads print
    tracebacks (through fd 2 and `sys.stderr`) at any moment, even after the
    failure has been reported. Output for people goes to `terminal()`, a copy of
    the original descriptor. After a failure the redirection stays: the process
    is about to end, and late library output belongs in the log.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._real: int | None = None
        self._saved: TextIO | None = None

    def __enter__(self) -> NativeStderrToFile:
        global _TERMINAL
        sys.stderr.flush()
        self._real = os.dup(2)
        log = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 2)
        os.close(log)
        self._saved = sys.stderr
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        _TERMINAL = os.fdopen(os.dup(self._real), "w", buffering=1, encoding="utf-8", errors="replace")
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        global _TERMINAL
        from expspec.errors import BadInput

        # Bad input fails before any background writer exists: restore at once.
        failed = exc is not None and not isinstance(exc, BadInput)
        if failed or self._real is None or self._saved is None:
            return
        for stream in (sys.stderr, _TERMINAL):
            if stream is not None:
                stream.flush()
                stream.close()
        sys.stderr, _TERMINAL = self._saved, None
        os.dup2(self._real, 2)
        os.close(self._real)


class NativeStdoutToFile:
    """While a cluster run is live, fd 1 goes to the process's log file.

    Gloo prints its connection notes on fd 1, where `exp run --json` writes its
    result; the result is written after the run, once fd 1 is restored.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._real: int | None = None

    def __enter__(self) -> NativeStdoutToFile:
        sys.stdout.flush()
        self._real = os.dup(1)
        log = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.close(log)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._real is None:
            return
        sys.stdout.flush()
        os.dup2(self._real, 1)
        os.close(self._real)
        self._real = None
