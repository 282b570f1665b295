"""Files written whole or not at all: what every writer of records, caches and weights needs.

A reader (another process, a resumed run, an audit) must see the old file or
the new one, never half of one, even if the writer is killed mid-write.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, chunks: Iterable[bytes | memoryview], *, mode: int = 0o644) -> None:
    """Write `chunks` to `path` through a temporary file in the same folder, synced, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
