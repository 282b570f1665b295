"""Errors of background threads go to the run's records, not the terminal.

When a checkpoint write fails (a full disk), Orbax's writer threads log
through absl and raise in their own threads; the main thread learns of it at
the next save or wait and reports it in one line. Without this, the same
failure would also print dozens of log lines and thread tracebacks.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["background_errors_captured"]

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
