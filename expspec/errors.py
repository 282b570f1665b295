"""The two kinds of error the package raises, so the command line needs one rule for both.

Every library error derives from exactly one of them: `BadInput` when what the
user gave (a spec, a file, a run directory, data, a model) cannot be used as
given, so nothing should be retried until it is changed; `RunFailure` when the
input was fine but the work could not go on. The CLI maps the first to exit 2
and the second to exit 3 in one place; library code only chooses the base.

Standard library only, and importing it imports nothing else of the package,
so spec/ and compiler/ (which must not import JAX) can derive from it.
"""

from __future__ import annotations

__all__ = ["BadInput", "RunFailure"]


class BadInput(Exception):
    """The user's spec, files, run directory, data or model cannot be used as given (exit 2)."""


class RunFailure(Exception):
    """The input was usable but the run could not go on (exit 3)."""
