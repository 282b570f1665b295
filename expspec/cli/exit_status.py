"""The exit code of each way a command can end that the library reports as a value.

The library says what happened (an audit report's overall status, the signal
that stopped an audit); only the command line turns that into an exit code.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from expspec.exit_codes import ExitCode

if TYPE_CHECKING:
    from expspec.audit.report import AuditReport

__all__ = ["audit_exit_code", "stopped_exit_code"]

_AUDIT = {"passed": ExitCode.OK, "failed": ExitCode.CHECK_FAILED, "error": ExitCode.BAD_INPUT}


def audit_exit_code(report: AuditReport) -> ExitCode:
    """0 every check holds, 1 a check failed, 2 a check could not run."""
    return _AUDIT[report.overall]


def stopped_exit_code(signum: int) -> ExitCode:
    """The code of a command its runs stopped on `signum`: PREEMPTED after SIGTERM
    (run it again), INTERRUPTED after SIGINT."""
    return ExitCode.PREEMPTED if signum == signal.SIGTERM else ExitCode.INTERRUPTED
