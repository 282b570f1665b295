"""Give back the resident pages of memory-mapped files (corpora, weights) without unmapping them.

Reading a memory-mapped Arrow file leaves every touched page (and the kernel's
fault-around neighbours) counted in the process's RSS as file-backed memory.
Those pages are clean copies of the page cache and cost nothing the kernel
cannot reclaim, but over an epoch they add up to the corpus size in `ps`, in
cgroup accounting and in peak-RSS budgets. MADV_DONTNEED on a read-only file
mapping drops only the page-table entries: the next read faults the same
bytes back in from the page cache, so results cannot change.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Collection
from typing import Any

__all__ = ["release_mapped_pages"]

_MADV_DONTNEED = 4
_libc: ctypes.CDLL | None = None


def _madvise() -> Any:
    global _libc
    if _libc is None:
        # The process's own symbols include libc's: no `find_library`, which runs ldconfig.
        _libc = ctypes.CDLL(None, use_errno=True)
    madvise = _libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def release_mapped_pages(paths: Collection[str]) -> int:
    """Bytes of this process's mappings of `paths` whose resident pages were dropped (Linux; else 0).

    Safe while other threads read the same mappings: they fault the pages back.
    """
    if not paths or not sys.platform.startswith("linux"):
        return 0
    wanted = set(paths)
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.readlines()
    except OSError:
        return 0
    madvise = _madvise()
    released = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5].rstrip("\n") not in wanted or "w" in fields[1]:
            continue  # never touch a writable mapping: dropping it could lose data
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += end - start
    return released
