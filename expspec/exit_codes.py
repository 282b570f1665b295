"""The exit codes of every `exp` command, and of the children it supervises.

One enum, so that the command line that picks a code and the supervisor that
reads a child's code (`exp launch`, a sweep, the audit) agree by name, not by a
number spelled twice. Standard library only, and importing it imports nothing of
the package: `exp`'s first line (cli/early_signals.py) uses it before any other import.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """What a process's exit status says about how it ended."""

    OK = 0
    CHECK_FAILED = 1
    """An audit check failed, or `exp diff` found two plans that differ."""
    BAD_INPUT = 2
    """Bad usage, an invalid spec, a refused run directory, or a check that could not run."""
    RUN_FAILED = 3
    """The run started and failed."""
    PREEMPTED = 75
    """Stopped by SIGTERM (or a first SIGINT) after saving: the same command resumes it (EX_TEMPFAIL)."""
    INTERRUPTED = 130
    """A second SIGINT: stopped at once, nothing saved (128 + SIGINT)."""
