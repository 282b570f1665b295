"""A small tmpfs for a test to fill, with or without root.

As root the tmpfs is mounted where the test runs, as `mount` does. Without root
it is mounted inside a new user and mount namespace (`unshare --user
--map-root-user --mount`), which unprivileged users may create where the kernel
allows it: a small process holds that namespace open, commands that must see
the tmpfs run in it (`nsenter`), and the test reads its files through the
holder's view of the filesystem (`/proc/PID/root`). The mount is private to
that namespace and goes away with the holder, so nothing outlives the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Tmpfs", "TmpfsUnavailable", "mount_tmpfs"]

# Mounts `$1` with size `$2`, says so on stdout, then holds the namespace open
# until its stdin closes (the test ends it, or dies and the pipe closes).
_HOLD = 'mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1" || exit 1; echo mounted; exec cat'


class TmpfsUnavailable(Exception):
    """Neither root nor a user namespace could mount a tmpfs here; the message names what is missing."""


class Tmpfs:
    """A mounted tmpfs at `point`, and how to reach what is on it."""

    def __init__(self, point: Path, holder: subprocess.Popen[str] | None) -> None:
        self.point = point
        self._holder = holder
        self._enter = (
            []
            if holder is None
            else ["nsenter", f"--target={holder.pid}", "--user", "--mount", "--preserve-credentials"]
        )

    @property
    def how(self) -> str:
        return "root" if self._holder is None else "a user namespace"

    def seen(self, path: Path) -> Path:
        """Where the test process reads `path` (a path as commands in the tmpfs's namespace see it)."""
        if self._holder is None:
            return path
        return Path(f"/proc/{self._holder.pid}/root") / Path(path).absolute().relative_to("/")

    def run(self, argv: Sequence[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `argv` where the tmpfs is mounted."""
        wd = [f"--wd={cwd}"] if self._enter else []
        return subprocess.run([*self._enter, *wd, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)

    def resize(self, size: str) -> None:
        # `-t tmpfs ... tmpfs` spelled out: a remount by mount point alone is refused in a user namespace.
        result = self.run(
            ["mount", "-t", "tmpfs", "-o", f"remount,size={size}", "tmpfs", str(self.point)], cwd=Path("/"), timeout=30
        )
        assert result.returncode == 0, f"cannot resize the tmpfs ({self.how}): {_first_line(result)}"

    def close(self) -> None:
        if self._holder is None:
            if _quiet(["umount", str(self.point)]).returncode != 0:
                _quiet(["umount", "-l", str(self.point)])
            return
        self._holder.stdin.close()  # type: ignore[union-attr]
        try:
            self._holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._holder.kill()
            self._holder.wait()


def _quiet(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    return ((result.stderr or result.stdout).strip().splitlines() or [f"exit {result.returncode}"])[0]


def _as_root(point: Path, size: str) -> Tmpfs | str:
    mounted = _quiet(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)])
    return Tmpfs(point, None) if mounted.returncode == 0 else f"mount as root: {_first_line(mounted)}"


def _in_user_namespace(point: Path, size: str) -> Tmpfs | str:
    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"a user namespace needs {' and '.join(missing)} (util-linux), not installed"
    holder = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c", _HOLD, "sh", str(point), size],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if holder.stdout.readline().strip() == "mounted":  # type: ignore[union-attr]
        return Tmpfs(point, holder)
    holder.stdin.close()  # type: ignore[union-attr]
    error = (holder.stderr.read().strip().splitlines() or [f"exit {holder.wait()}"])[0]  # type: ignore[union-attr]
    holder.wait()
    return f"user namespace (unshare --user --map-root-user --mount): {error}"


def mount_tmpfs(point: Path, size: str) -> Tmpfs:
    """Mount a tmpfs of `size` bytes (mount's syntax: "4096", "1m") at `point`.

    Root mounts it directly; anyone else (or root where `mount` is refused) in a
    user namespace. Raises `TmpfsUnavailable` naming why each way failed.
    """
    reasons = []
    if os.geteuid() == 0:
        mounted = _as_root(point, size)
        if isinstance(mounted, Tmpfs):
            return mounted
        reasons.append(mounted)
    else:
        reasons.append("not root")
    mounted = _in_user_namespace(point, size)
    if isinstance(mounted, Tmpfs):
        return mounted
    reasons.append(mounted)
    raise TmpfsUnavailable("cannot mount a tmpfs to fill: " + "; ".join(reasons))
