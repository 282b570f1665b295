"""The `exp` command line: thin commands over the package API.

`main` sets the signal handling before anything else is imported (see
early_signals.py), and every command imports its heavy dependencies inside its
body, so `exp --help`, `exp plan` and `exp validate` never import JAX. `exp
plan`, `validate`, `diff` and `runs` skip typer too when their argv is plain
(fast.py); the typer application answers everything else.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (and `python -m expspec`): it owns the process's signals."""
    from expspec.exit_codes import ExitCode

    from .early_signals import Interrupted, install
    from .fast import run_fast

    try:
        install(sys.argv[1:])  # a Ctrl-C held back by a supervisor arrives in here
        code = run_fast(sys.argv[1:])
        if code is not None:
            sys.exit(code)
        _app()(prog_name="exp")
    except Interrupted:
        sys.exit(ExitCode.INTERRUPTED)


def _app() -> Any:
    """The typer application, imported on first use: importing `expspec.cli` must stay cheap for `main`."""
    from .app import app

    # Importing the submodule `expspec.cli.app` set the package's `app` to the module; it is the application.
    globals()["app"] = app
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module 'expspec.cli' has no attribute {name!r}")
