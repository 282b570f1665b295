"""Exact data fingerprints at memory speed, cached by file identity.

A fingerprint must change when the bytes change and only then: names and
timestamps do not enter it, so a renamed or copied corpus keeps its fingerprint.
Hashing is xxh3-128 over memory-mapped chunks (several GB/s; each chunk is
unmapped once hashed, so resident memory stays flat). A 10 GB corpus is still
not re-read at every start: each file's digest is cached under its identity
(resolved path, size, mtime_ns, inode, device).

The cache trusts that identity the way make and rsync trust size and mtime: an
edit that keeps the size and restores the modification time is not seen until
`rehash=True`. That is the documented contract, and `exp run --rehash-data` is
the way out.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xxhash

from expspec.atomic_files import write_atomic

__all__ = ["CHUNK_BYTES", "content_digest", "file_digest", "file_identity"]

CHUNK_BYTES = 8 * 1024 * 1024
"""Bytes mapped and hashed at a time: large enough for memory speed, small enough to keep RSS flat."""

_FORMAT = "expspec-content-digest-1"
"""Names the entry layout and the combination rule; a change makes old entries miss."""

_HEX_DIGITS = frozenset("0123456789abcdef")


def file_identity(path: Path) -> dict[str, Any]:
    """What the cache trusts to say a file is unchanged (stat follows symlinks)."""
    return _identity(Path(path).resolve(), os.stat(path))


def _identity(resolved: Path, st: os.stat_result) -> dict[str, Any]:
    return {
        "path": str(resolved),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }


def _hash_open_file(fd: int, size: int) -> str:
    hasher = xxhash.xxh3_128()
    offset = 0
    while offset < size:
        length = min(CHUNK_BYTES, size - offset)  # offsets stay multiples of the page size
        with mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=offset) as chunk:
            if hasattr(chunk, "madvise"):
                chunk.madvise(mmap.MADV_SEQUENTIAL)
            hasher.update(chunk)
        offset += length
    return hasher.hexdigest()


def file_digest(path: Path) -> tuple[str, dict[str, Any]]:
    """(xxh3-128 hex of the file's bytes, its identity), never from the cache.

    The identity is taken from the open file before and after reading; a file
    that changed meanwhile is read again once, then refused with OSError.
    """
    resolved = Path(path).resolve()
    for _ in range(2):
        with open(path, "rb") as handle:
            before = _identity(resolved, os.fstat(handle.fileno()))
            digest = _hash_open_file(handle.fileno(), before["size"])
            after = _identity(resolved, os.fstat(handle.fileno()))
        if before == after and after == file_identity(path):
            return digest, after
    raise OSError(f"{path} changed while it was being read")


def _entry_path(cache: Path, identity: dict[str, Any]) -> Path:
    # One entry per file path: an edited file overwrites its entry instead of adding one.
    return cache / f"{xxhash.xxh3_128_hexdigest(identity['path'].encode())}.json"


def _cached(cache: Path, identity: dict[str, Any]) -> str | None:
    try:
        entry = json.loads(_entry_path(cache, identity).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or damaged: hash again and rewrite
    if not isinstance(entry, dict) or entry.get("format") != _FORMAT or entry.get("identity") != identity:
        return None
    digest = entry.get("digest")
    if not isinstance(digest, str) or len(digest) != 32 or not set(digest) <= _HEX_DIGITS:
        return None
    return digest


def _store(cache: Path, identity: dict[str, Any], digest: str) -> None:
    """Write the entry atomically; a cache that cannot be written costs time, never correctness."""
    text = json.dumps({"format": _FORMAT, "identity": identity, "digest": digest}, sort_keys=True)
    try:
        write_atomic(_entry_path(cache, identity), [text.encode("utf-8")])
    except OSError:
        pass


def content_digest(files: Sequence[Path], *, cache: Path | None, rehash: bool = False) -> str:
    """An exact fingerprint of the files' bytes, in the order given.

    Each file's content is hashed with xxh3-128, read memory-mapped in large
    chunks; the result is xxh3-128 over the per-file digests and sizes, so
    names and timestamps do not enter it (a renamed or touched file with the
    same bytes gives the same digest) while order does. Per-file digests are
    cached under `cache` (a folder, created on first write; None: no cache)
    keyed by identity (resolved path, size, mtime_ns, inode, device), so a
    large corpus is not re-read at every start. `rehash=True` reads every file
    again and refreshes the cache. Entries are written atomically; a damaged
    one is ignored and rewritten. A missing or unreadable file raises OSError
    for the caller to word.
    """
    combined = xxhash.xxh3_128()
    combined.update(f"{_FORMAT}\n".encode())
    for path in files:
        identity = file_identity(path)
        digest = None if cache is None or rehash else _cached(cache, identity)
        if digest is None:
            digest, identity = file_digest(path)
            if cache is not None:
                _store(cache, identity, digest)
        combined.update(f"{identity['size']} {digest}\n".encode())
    return combined.hexdigest()
