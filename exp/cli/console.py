"""Terminal output: people read stderr, programs read stdout."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from exp.spec import SpecError

EXIT_INVALID = 2


@cache
def stderr() -> Console:
    """The one console for human output."""
    import sys

    from rich.console import Console

    # Logs (CI, files) have no width; rich would wrap tables at 80 columns.
    width = None if sys.stderr.isatty() else 160
    return Console(stderr=True, highlight=False, soft_wrap=True, width=width, emoji=False, markup=False)


def say(text: str) -> None:
    """A plain line for people (no markup interpretation of file names)."""
    stderr().print(text, markup=False)


def print_problems(err: SpecError) -> None:
    """Every problem, one line each."""
    for problem in err.problems:
        stderr().print(str(problem), markup=False, style="red")


def fail_invalid(err: SpecError) -> NoReturn:
    """Print every problem and exit 2."""
    print_problems(err)
    raise typer.Exit(EXIT_INVALID)
