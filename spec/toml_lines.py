"""Line numbers of the keys in a TOML document.

`tomllib` returns plain dicts with no positions, but an error report must say
on which line a bad key stands. This scanner walks text that `tomllib` has
already accepted, so it only has to be right on valid TOML: it tracks table
headers, dotted and quoted keys, inline tables, (multi-line) arrays and the four
string forms, and records the first line of every key path and array item.
"""

from __future__ import annotations

import bisect
import re

__all__ = ["KeyPath", "key_lines"]

KeyPath = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_MAX_DEPTH = 64


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[KeyPath, int] = {}

    # -- positions -------------------------------------------------------
    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.pos) + 1

    def record(self, path: KeyPath, line: int) -> None:
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces, and with `newlines` also line breaks and comments."""
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.pos += 1
            elif c == "#" and newlines:
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                return

    def require_progress(self, start: int) -> None:
        if self.pos <= start:
            raise ValueError("scanner stalled")

    def skip_line(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end + 1

    # -- keys ------------------------------------------------------------
    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            c = self.peek()
            if c == '"':
                parts.append(self.basic_string())
            elif c == "'":
                parts.append(self.literal_string())
            else:
                match = _BARE.match(self.text, self.pos)
                if not match:
                    break
                parts.append(match.group())
                self.pos = match.end()
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                break
            self.pos += 1
        return tuple(parts)

    # -- strings ---------------------------------------------------------
    def basic_string(self) -> str:
        """Read a one-line "..." string (key or value) and return its text."""
        text = self.text
        start = self.pos + 1
        i = start
        while i < len(text) and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        self.pos = i + 1
        raw = text[start:i]
        try:
            return raw.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            return raw

    def literal_string(self) -> str:
        end = self.text.index("'", self.pos + 1)
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def multiline_string(self, quote: str) -> None:
        i = self.pos + 3
        text = self.text
        while True:
            if quote == '"""' and text[i] == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                # A closing delimiter may be preceded by up to two quote characters.
                while text.startswith(quote[0], i + 3):
                    i += 1
                self.pos = i + 3
                return
            i += 1

    # -- values ----------------------------------------------------------
    def value(self, path: KeyPath, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise RecursionError("TOML nested too deeply to locate keys")
        self.skip_blank(newlines=False)
        three = self.peek(3)
        c = self.peek()
        if three in ('"""', "'''"):
            self.multiline_string(three)
        elif c == '"':
            self.basic_string()
        elif c == "'":
            self.literal_string()
        elif c == "[":
            self.array(path, depth)
        elif c == "{":
            self.inline_table(path, depth)
        else:
            text, n = self.text, len(self.text)
            while self.pos < n and text[self.pos] not in ",]}#\n":
                self.pos += 1

    def array(self, path: KeyPath, depth: int) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text) or self.peek() == "]":
                self.pos += 1
                return
            start = self.pos
            item = (*path, index)
            self.record(item, self.line())
            self.value(item, depth + 1)
            index += 1
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            self.require_progress(start)

    def inline_table(self, path: KeyPath, depth: int) -> None:
        self.pos += 1
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text) or self.peek() == "}":
                self.pos += 1
                return
            start, line = self.pos, self.line()
            key = (*path, *self.key())
            self.record(key, line)
            self.skip_blank(newlines=False)
            self.pos += 1  # '='
            self.value(key, depth + 1)
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            self.require_progress(start)

    # -- document --------------------------------------------------------
    def document(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        array_counts: dict[KeyPath, int] = {}
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            line = self.line()
            if self.peek(2) == "[[":
                self.pos += 2
                name = self.key()
                index = array_counts.get(name, 0)
                array_counts[name] = index + 1
                table = (*name, index)
                self.record(table, line)
                self.skip_line()
            elif self.peek() == "[":
                self.pos += 1
                table = self.key()
                self.record(table, line)
                self.skip_line()
            else:
                key = (*table, *self.key())
                self.record(key, line)
                self.skip_blank(newlines=False)
                self.pos += 1  # '='
                self.value(key, 0)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every key path (and array item path) of valid TOML `text` to its 1-based line.

    Best effort by design: on text the scanner cannot follow it returns what it
    found so far, and callers fall back to the nearest enclosing key.
    """
    scanner = _Scanner(text)
    try:
        return scanner.document()
    except (IndexError, ValueError, RecursionError):
        return scanner.lines
