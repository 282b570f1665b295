"""`exp plan`, `validate`, `diff` and `runs` without typer's start-up.

Importing typer and building its application costs more than these commands'
own work. `run_fast` parses their argv with the commands' `PARAMS` (the list
the typer application is built from, options.py) and calls the same `command`
function. Anything it does not fully understand (`--help`, an unknown option,
a missing or extra argument, a value typer would refuse or might read
differently) returns None, and `main` hands argv to the typer application: its
help texts and usage errors (exit 2) are the only ones.
"""

from __future__ import annotations

import errno
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .options import Param

__all__ = ["FAST_COMMANDS", "parse", "run_fast"]

FAST_COMMANDS = frozenset({"plan", "validate", "diff", "runs"})
"""Commands whose modules import no typer: `command(**values)` returns the exit code."""


def run_fast(argv: Sequence[str]) -> int | None:
    """The exit code of `exp *argv` run without typer, or None (nothing done) when
    the typer application must run it."""
    if not argv or argv[0] not in FAST_COMMANDS or os.environ.get("_EXP_COMPLETE"):
        return None  # click answers shell completion whatever argv says
    collecting = gc.isenabled()
    # These commands live a fraction of a second and leave little garbage, but
    # importing pydantic and building the spec's models allocates enough to set
    # off collections that walk every object made so far, again and again.
    gc.disable()
    try:
        module = importlib.import_module(f"{__package__}.{argv[0]}")
        values = parse(module.PARAMS, argv[1:])
        if values is None:
            return None
        code = _run(module.command, values)
        # The collection at interpreter exit then skips what the command left alive.
        gc.freeze()
        return code
    finally:
        if collecting:
            gc.enable()


def _run(command: Callable[..., int], values: dict[str, Any]) -> int:
    """`command`'s exit code; 1 where stdout's reader went away."""
    try:
        return int(command(**values))
    except OSError as err:
        if err.errno != errno.EPIPE:
            raise
        # What click does when the reader of stdout went away (`exp plan --json | head`):
        # exit 1, and no second error when Python flushes stdout on its way out.
        _discard_stdout()
        return 1


def parse(params: Sequence[Param], args: Sequence[str]) -> dict[str, Any] | None:
    """The keyword values typer would pass for `args`, or None where `args` holds
    anything beyond plain arguments and the options in `params`."""
    options = {p.flag: p for p in params if p.flag is not None}
    values: dict[str, Any] = {}
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        flag, has_value, value = arg.partition("=")
        param = options.get(flag)
        if param is None or (param.name in values and not param.many):
            return None  # --help, -h, --, -, an unknown option; a repeated one
        if param.item is bool:
            if has_value:
                return None
            values[param.name] = True
            continue
        if not has_value:
            if not rest:
                return None
            value = rest.pop(0)
        converted = _convert(param, value)
        if converted is None:
            return None
        if param.many:
            values.setdefault(param.name, []).append(converted)
        else:
            values[param.name] = converted
    for param in params:
        if param.flag is not None:
            continue
        if param.many:
            taken, positional = positional, []
        else:
            taken, positional = positional[:1], positional[1:]
        if not taken:
            if param.required:
                return None
            continue  # its default, below
        converted_args = [_convert(param, arg) for arg in taken]
        if any(value is None for value in converted_args):
            return None
        values[param.name] = converted_args if param.many else converted_args[0]
    if positional:
        return None  # an extra argument
    return {p.name: values.get(p.name, p.default) for p in params}


def _convert(param: Param, text: str) -> Any:
    """`text` as a value of `param`, or None where typer might read it otherwise (or refuse it)."""
    if not text or text.startswith("-"):
        return None
    if param.item is str:
        return text
    if param.item is Path:
        return Path(text)
    if param.item is int and text.isascii() and text.isdigit():
        number = int(text)
        return number if param.min is None or number >= param.min else None
    return None


def _discard_stdout() -> None:
    """Point stdout at /dev/null: what is left in its buffer goes nowhere."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass
