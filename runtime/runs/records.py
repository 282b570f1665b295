"""Append-only JSON-lines files (ledger, metrics, events) and the run directory lock.

A run can be killed between any two bytes. Each record is one line written
with a single `write` and flushed, so what reaches the file is a prefix of the
intended content: at worst the last line is torn. `repair_tail` cuts a torn
last line on resume; no complete line is ever rewritten or lost.

So a torn last line is the one damage a kill can do, and readers skip it. Any
other line that holds no record (not UTF-8, not JSON, NUL bytes from a disk
that lost blocks, not an object) is damage no writer of this format makes: the
reader reports it as `DamagedRecord`, naming the file and line, instead of
guessing what the file meant. There is one reader and two ways to meet damage:
by default it raises (the audit, where a damaged record is bad input); given
`on_damage`, it hands each damaged line to that callback and reads on (a
resumed run, which skips such lines, counts them and records where they are).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from expspec.errors import BadInput

__all__ = [
    "DamagedRecord",
    "Discard",
    "JsonLines",
    "RunLock",
    "RunLocked",
    "OnDamage",
    "ignore_damage",
    "iter_jsonl",
    "iter_records",
    "lines_backwards",
    "parse_record",
    "read_jsonl",
    "records_backwards",
    "repair_tail",
]


def repair_tail(path: Path) -> int:
    """Cut a torn (unterminated) last line; return how many bytes were removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return 0
        # Walk back to the last newline in chunks; specs of lines are small.
        end, chunk = size, 4096
        keep = 0
        while end > 0:
            start = max(0, end - chunk)
            handle.seek(start)
            block = handle.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return size - keep


class DamagedRecord(BadInput, ValueError):
    """A complete line of a JSON-lines file that holds no record; says which file and line."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        """From 1; None where the reader cannot count lines (`exp runs` reads files from their end)."""
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: a line {reason}")


OnDamage = Callable[[DamagedRecord], None]
"""Called with each damaged line a tolerant read skips."""


def ignore_damage(_: DamagedRecord) -> None:
    """`on_damage` for a read whose damage is reported elsewhere (the resumed run's survey)."""


def parse_record(raw: bytes, path: Path, line: int | None = None) -> dict[str, Any]:
    """The record one complete line (without its newline) holds; raises `DamagedRecord`."""
    if b"\0" in raw:
        raise DamagedRecord(path, line, "holds NUL bytes, not a record")
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedRecord(path, line, "not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise DamagedRecord(path, line, f"not JSON ({err.msg} at column {err.colno})") from None
    except ValueError as err:  # an integer too long to convert
        raise DamagedRecord(path, line, f"not JSON ({err})") from None
    if not isinstance(record, dict):
        raise DamagedRecord(path, line, f"not a JSON object (a {type(record).__name__})")
    return record


def iter_records(path: Path, on_damage: OnDamage | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number from 1, record) for each complete line of a JSON-lines file.

    A missing file has no records and a torn last line is skipped; any other line
    that is not a JSON object raises `DamagedRecord`, or with `on_damage` is
    handed to it and skipped.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                return
            try:
                record = parse_record(raw[:-1], path, number)
            except DamagedRecord as damaged:
                if on_damage is None:
                    raise
                on_damage(damaged)
                continue
            yield number, record


def lines_backwards(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The complete lines of `path`, last first, without reading the whole file
    (`exp runs` and resume want a run's newest records); a torn last line is skipped."""
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        end = handle.seek(0, os.SEEK_END)
        pending = b""  # the start of the earliest line read so far: complete only at offset 0
        past_last_newline = True
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            parts = (handle.read(end - start) + pending).split(b"\n")
            pending = parts.pop(0) if start > 0 else b""
            for line in reversed(parts):
                if past_last_newline:
                    past_last_newline = False  # empty, or a line torn by a kill
                    continue
                yield line
            end = start


def records_backwards(path: Path) -> Iterator[dict[str, Any]]:
    """Records of `path`, last first; damaged lines are skipped, as resume skips (and records) them."""
    for line in lines_backwards(path):
        try:
            yield parse_record(line, path)
        except DamagedRecord:
            continue


def iter_jsonl(path: Path, on_damage: OnDamage | None = None) -> Iterator[dict[str, Any]]:
    """Records of a JSON-lines file (see `iter_records`)."""
    for _, record in iter_records(path, on_damage):
        yield record


def read_jsonl(path: Path, on_damage: OnDamage | None = None) -> list[dict[str, Any]]:
    return list(iter_jsonl(path, on_damage))


class JsonLines:
    """An append-only JSON-lines file, flushed after every record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        repair_tail(path)
        self._handle: TextIO | None = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        assert self._handle is not None, f"{self.path} is closed"
        self._handle.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Discard(JsonLines):
    """A record file this process does not keep: in a cluster, process 0 alone
    writes the run's shared events and metrics."""

    def __init__(self) -> None:
        self.path = Path(os.devnull)
        self._handle = None

    def write(self, record: dict[str, Any]) -> None:
        pass


class RunLocked(BadInput, RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """One writer per run directory, held with `flock`.

    The kernel drops an `flock` when its process dies, however it dies, so a lock
    left by a killed run is never mistaken for a live one: the next run takes it
    over and learns from the file who held it before.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.previous: dict[str, Any] | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
            raise RunLocked(f"{self.path.parent} is in use by {who}; wait for it or stop it") from None
        self.previous = self._read(fd) or None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, UnicodeDecodeError):
            return {}

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
