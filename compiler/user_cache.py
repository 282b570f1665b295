"""Where expspec keeps what is costly to recompute and safe to lose.

Data fingerprints and converted corpora are cached per user, outside every run
directory, so a second run over the same 10 GB corpus starts at once. Nothing
here is an input to a run: deleting the folder only makes the next start slower.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """The user cache folder: $EXPSPEC_CACHE_DIR, else $XDG_CACHE_HOME/expspec, else ~/.cache/expspec.

    It is not created here; whoever writes into it creates what it needs, so
    merely asking for the path never touches the disk.
    """
    own = os.environ.get("EXPSPEC_CACHE_DIR")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "expspec"
    return Path.home() / ".cache" / "expspec"
