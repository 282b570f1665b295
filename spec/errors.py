"""Problems found in a spec, reported all at once, one line each."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from expspec.errors import BadInput

__all__ = ["NO_VALUE", "Problem", "SpecError", "key_path_text", "show_value"]

NO_VALUE: Any = object()
"""Marks a problem that has no offending value to show (e.g. a missing key)."""


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _printable(text: str) -> str:
    """Escape what a terminal would act on (hostile input must not drive the terminal)."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def key_path_text(path: tuple[Any, ...]) -> str:
    """A key path as TOML writes it: bare keys plain, others quoted."""
    parts = []
    for key in path:
        key = str(key)
        parts.append(key if _BARE_KEY.match(key) else _printable(json.dumps(key, ensure_ascii=False)))
    return ".".join(parts)


def show_value(value: Any, limit: int = 60) -> str:
    """A short TOML-like rendering of a value for an error line."""
    if value is True or value is False:
        text = "true" if value else "false"
    elif isinstance(value, int) and value.bit_length() > 128:
        text = f"an integer of {value.bit_length()} bits"
    elif isinstance(value, float | int):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    text = _printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, with where it stands."""

    file: str | None
    """The spec file (as the caller named it), `<override>` for a command-line
    override, or None when no file is involved."""
    line: int | None
    path: str
    """Dotted key path, e.g. `optimizer.learning_rate`; empty for file-level problems."""
    message: str
    got: Any = NO_VALUE

    def __str__(self) -> str:
        where = _printable(self.file or "<spec>")
        if self.line is not None:
            where = f"{where}:{self.line}"
        message = _printable(self.message)
        text = f"{where}: {self.path}: {message}" if self.path else f"{where}: {message}"
        if self.got is not NO_VALUE:
            text += f" (got {show_value(self.got)})"
        return text

    def sort_key(self) -> tuple[str, int, str]:
        return (self.file or "", self.line or 0, self.path)


class SpecError(BadInput):
    """A spec could not be loaded; `problems` lists every reason found."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(sorted(problems, key=Problem.sort_key))
        super().__init__("\n".join(str(p) for p in self.problems))
