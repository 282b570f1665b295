"""The output folder of an export: written whole under a temporary name, or not at all.

An export is built in a hidden folder next to its destination and renamed into
place at the end, so a failure (bad input found late, a full disk, an interrupt)
leaves nothing behind, and a folder at the destination is always complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from expspec.runtime.export.trained import ExportError

__all__ = ["check_output", "staged_folder"]


def check_output(out: Path) -> None:
    """Refuse a destination that holds something or whose parent folder does not exist."""
    out = Path(out)
    if out.is_dir():
        if any(out.iterdir()):
            raise ExportError(f"{out}: output folder exists and is not empty; name a new or empty folder")
    elif out.exists():
        raise ExportError(f"{out}: exists and is not a folder")
    elif not out.parent.is_dir():
        raise ExportError(f"{out}: cannot write: no such directory {out.parent}")


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block succeeds, removed when it fails."""
    out = Path(out)
    check_output(out)
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    except OSError as err:
        raise ExportError(f"{out}: cannot write: {err.strerror or err}") from None
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; the export is an ordinary folder
        check_output(out)  # still free: nothing appeared there meanwhile
        if out.is_dir():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
