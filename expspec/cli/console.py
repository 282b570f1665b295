"""Terminal output: people read stderr, programs read stdout."""

from __future__ import annotations

import codecs
import sys
from functools import cache
from typing import TYPE_CHECKING, NoReturn, TextIO

from expspec.errors import BadInput
from expspec.exit_codes import ExitCode

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from expspec.spec import SpecError


@cache
def stderr() -> Console:
    """The one console for human output."""
    from rich.console import Console

    # Logs (CI, files) have no width; rich would wrap tables at 80 columns.
    width = None if _terminal().isatty() else 160
    return Console(file=_Terminal(), highlight=False, soft_wrap=True, width=width, emoji=False, markup=False)


def _terminal() -> TextIO:
    """The real stderr: a run redirects stderr with the runtime's `quiet` module,
    so until that module is imported (never, in `exp plan` or `validate`) it is
    `sys.stderr`; importing it would cost them its logging."""
    quiet = sys.modules.get("expspec.runtime.processes.quiet")
    return sys.stderr if quiet is None else quiet.terminal()


class _Terminal:
    """A file that always writes to the real stderr, even while a run redirects
    stderr to its log (the final error line of a failed run must be seen)."""

    def write(self, text: str) -> int:
        return _terminal().write(text)

    def flush(self) -> None:
        _terminal().flush()

    def isatty(self) -> bool:
        return _terminal().isatty()


def exit_code_for(err: BaseException) -> ExitCode:
    """The exit code for a command that `err` ended: the one place the two library
    bases (expspec.errors) become codes. `BadInput` is 2; a `RunFailure`, or anything
    the library did not foresee, is 3."""
    return ExitCode.BAD_INPUT if isinstance(err, BadInput) else ExitCode.RUN_FAILED


def say(text: str) -> None:
    """A plain line for people (no markup interpretation of file names)."""
    if text.isprintable():
        # The bytes rich would write; importing rich would cost `exp validate`
        # more than validating does. Tabs and control characters go through rich.
        _Terminal().write(text + "\n")
        return
    stderr().print(text, markup=False)


def echo(text: str) -> None:
    """`text` and a newline on stdout, flushed: the bytes `typer.echo` writes, without
    importing typer (the fast path's commands run without it)."""
    out = sys.stdout
    encoding = getattr(out, "encoding", None) or "ascii"
    buffer = getattr(out, "buffer", None)
    if buffer is not None and codecs.lookup(encoding).name == "ascii":
        # click writes UTF-8 where stdout claims ASCII (a misconfigured locale)
        out.flush()
        buffer.write(f"{text}\n".encode())
        buffer.flush()
        return
    out.write(f"{text}\n")
    out.flush()


def print_problems(err: SpecError) -> None:
    """Every problem, one line each."""
    for problem in err.problems:
        stderr().print(str(problem), markup=False, style="red")


def fail_invalid(err: SpecError) -> NoReturn:
    """Print every problem and exit 2 (SystemExit: the same under typer and on the fast path)."""
    print_problems(err)
    sys.exit(ExitCode.BAD_INPUT)


def byte_size(count: int) -> str:
    """A byte count for people: 1.8 MiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def write_output(output: Path | None, text: str) -> None:
    """`text` to stdout (None or "-") or to a file written whole or not at all: a
    half-written file would pass for a short one. Exit 2 if the file cannot be written."""
    import os
    import tempfile

    import typer

    if output is None or str(output) == "-":
        typer.echo(text, nl=False)
        return
    try:
        handle, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    except OSError as err:
        say(f"{output}: cannot write: {err.strerror or err}")
        raise typer.Exit(ExitCode.BAD_INPUT) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, output)
    except OSError as err:
        os.unlink(tmp)
        say(f"{output}: cannot write: {err.strerror or err}")
        raise typer.Exit(ExitCode.BAD_INPUT) from None
    say(f"wrote {output}")
