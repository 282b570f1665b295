"""Reading one spec file: bytes to a TOML table with the line of every key."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Problem, SpecError, key_path_text
from .toml_lines import KeyPath, key_lines

__all__ = ["MAX_DEPTH", "MAX_SPEC_BYTES", "Document", "nested_deeper", "out_of_int64", "read_document"]

MAX_SPEC_BYTES = 1 << 20
"""A spec is a small hand-written file; anything larger is a mistake or an attack."""

MAX_DEPTH = 32
"""Deepest table/array nesting accepted in a spec."""

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


@dataclass(frozen=True)
class Document:
    """One parsed spec file."""

    file: str
    """The path as the caller wrote it (shown in error lines)."""
    path: Path
    """The resolved path (used for `extends` and relative paths)."""
    data: dict[str, Any]
    lines: dict[KeyPath, int]


def _problem(file: str, message: str, line: int | None = None) -> SpecError:
    return SpecError([Problem(file, line, "", message)])


def _decode(file: str, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise _problem(file, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {column})", line) from None
    return text.removeprefix("\ufeff")


def _parse(file: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        line = None
        if match := _TOML_POSITION.search(message):
            line = int(match.group(1))
            message = f"{message[: match.start()]} (column {match.group(2)})"
        elif match := _TOML_END.search(message):
            line = text.count("\n") + 1
            message = f"{message[: match.start()]} at end of file"
        raise _problem(file, f"invalid TOML: {message[:1].lower()}{message[1:]}", line) from None
    except RecursionError:
        raise _problem(file, f"invalid TOML: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # an integer literal longer than Python converts
        match = re.search(r"[0-9a-fA-F_]{4000,}", text)
        line = text.count("\n", 0, match.start()) + 1 if match else None
        raise _problem(file, f"invalid TOML: {str(err).splitlines()[0][:120]}", line) from None


INT64 = (-(2**63), 2**63 - 1)


def out_of_int64(data: Any) -> list[tuple[KeyPath, int]]:
    """Integers outside the 64-bit range TOML promises (iterative walk)."""
    found, stack = [], [((), data)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend(((*path, k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend(((*path, i), v) for i, v in enumerate(item))
        elif isinstance(item, int) and not isinstance(item, bool) and not INT64[0] <= item <= INT64[1]:
            found.append((path, item))
    return found


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return False


def read_document(file: str | Path) -> Document:
    """Read and parse a spec file; raise `SpecError` with a one-line reason otherwise."""
    name = str(file)
    path = Path(file)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise _problem(name, "no such file") from None
    except IsADirectoryError:
        raise _problem(name, "is a directory, not a spec file") from None
    except OSError as err:
        raise _problem(name, f"cannot read: {err.strerror or err}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise _problem(name, f"larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a small text file")
    text = _decode(name, raw)
    data = _parse(name, text)
    if nested_deeper(data, MAX_DEPTH):
        raise _problem(name, f"nested deeper than {MAX_DEPTH} levels")
    lines = key_lines(text)
    if wide := out_of_int64(data):
        raise SpecError(
            [
                Problem(name, lines.get(p), key_path_text(p), "integer outside the 64-bit range TOML allows", v)
                for p, v in wide
            ]
        )
    return Document(file=name, path=path.resolve(), data=data, lines=lines)
