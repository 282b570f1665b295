"""Dotted command-line overrides: `train.steps=100`, `model.hidden=[64,64]`.

The key is a TOML dotted key (so `seeds."data.shuffle"=7` works) and the value
a TOML value. A bare word that is not valid TOML (`optimizer.kind=adam`) is
taken as a string, as a shell user would expect.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

from .document import MAX_DEPTH, nested_deeper, out_of_int64
from .errors import Problem, SpecError

__all__ = ["Override", "parse_override", "parse_overrides"]

_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/+-]*$")


@dataclass(frozen=True)
class Override:
    """One `key.path=value` from the command line."""

    text: str
    path: tuple[str, ...]
    value: Any

    @property
    def key(self) -> str:
        return ".".join(self.path)


def _fail(text: str, message: str) -> SpecError:
    return SpecError([Problem("<command line>", None, "", f"override {text!r}: {message}")])


def _split(text: str) -> tuple[str, str]:
    """Split at the first `=` outside quotes (quoted keys may contain `=`)."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "=":
            return text[:i].strip(), text[i + 1 :].strip()
    raise _fail(text, "expected KEY=VALUE, e.g. train.steps=100")


def _key_path(text: str, key: str) -> tuple[str, ...]:
    if not key or any(c in key for c in "\n\r#=[]{}"):
        raise _fail(text, f"{key!r} is not a dotted key")
    try:
        table: Any = tomllib.loads(f"{key} = 0")
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        raise _fail(text, f"{key[:60]!r} is not a dotted key") from None
    path: list[str] = []
    while isinstance(table, dict):
        ((name, table),) = table.items()
        path.append(name)
    return tuple(path)


def _value(text: str, raw: str) -> Any:
    if "\n" not in raw and "\r" not in raw:
        try:
            parsed = tomllib.loads(f"v = {raw}")
        except tomllib.TOMLDecodeError:
            parsed = None
        except (ValueError, RecursionError):  # huge integers, absurd nesting
            raise _fail(text, "the value is too large or too deeply nested") from None
        if parsed is not None and list(parsed) == ["v"]:
            if out_of_int64(parsed) or nested_deeper(parsed, MAX_DEPTH):
                raise _fail(text, "the value is out of range (64-bit integers) or too deeply nested")
            return parsed["v"]
        if _BARE_WORD.match(raw):
            return raw
    raise _fail(text, f'{raw[:60]!r} is not a TOML value (quote strings: key="text")')


def parse_override(text: str) -> Override:
    """Parse one `key.path=value`; raise `SpecError` if it is malformed."""
    key, raw = _split(text)
    return Override(text=text, path=_key_path(text, key), value=_value(text, raw))


def parse_overrides(texts: list[str] | tuple[str, ...]) -> tuple[Override, ...]:
    """Parse every override, reporting all malformed ones at once."""
    parsed, problems = [], []
    for text in texts:
        try:
            parsed.append(parse_override(text))
        except SpecError as err:
            problems.extend(err.problems)
    if problems:
        raise SpecError(problems)
    return tuple(parsed)
