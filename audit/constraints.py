"""Pip constraints for a lockfile: the exact package versions its bits were recorded with.

Bitwise equality is promised only within one environment class, so a CI gate
that installs whatever a resolver picks today compares against another class
and proves nothing. The constraints file lets the gate reinstall the locked
class (`pip install -c exp.constraints.txt .`); it lives next to the lock and
is derived from it, so the two cannot disagree.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from expspec.errors import BadInput

__all__ = ["LockConflict", "constraints_path", "constraints_text", "install_command"]


class LockConflict(BadInput, ValueError):
    """The lock's entries were recorded with different versions of one package."""


def constraints_path(lock_path: Path) -> Path:
    """`exp.lock` -> `exp.constraints.txt`, in the lock's folder."""
    stem = lock_path.name[: -len(".lock")] if lock_path.name.endswith(".lock") else lock_path.name
    return lock_path.with_name(f"{stem}.constraints.txt")


def _pins(entries: Iterable[dict[str, Any]]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for entry in entries:
        packages = entry.get("environment", {}).get("packages", {})
        for name, version in packages.items() if isinstance(packages, dict) else ():
            if version is None:
                continue  # not installed when the lock was recorded: nothing to pin
            if pins.setdefault(name, str(version)) != str(version):
                raise LockConflict(f"entries were recorded with {name} {pins[name]} and {version}")
    return dict(sorted(pins.items()))


def constraints_text(document: dict[str, Any], lock_name: str) -> str:
    """The constraints file of a lock document: one `name==version` per locked package."""
    entries = document.get("entries", [])
    pythons = sorted({str(e["environment"]["python"]) for e in entries if "python" in e.get("environment", {})})
    header = [
        f"# The package versions {lock_name} was recorded with (its environment class).",
        f"# Install with them to reproduce its bits: pip install -c {constraints_path(Path(lock_name)).name} .",
        f"# Regenerate with: exp lock --constraints {lock_name}",
    ]
    if pythons:
        header.append(f"# Python: {', '.join(pythons)}")
    return "\n".join([*header, *(f"{name}=={version}" for name, version in _pins(entries).items())]) + "\n"


def install_command(lock_path: Path, packages: Iterable[str]) -> str:
    """The command that installs the locked versions of `packages`, from the lock's constraints."""
    constraints = constraints_path(lock_path)
    names = " ".join(shlex.quote(p) for p in sorted(set(packages)))
    install = f"pip install -c {shlex.quote(str(constraints))} {names}"
    if constraints.is_file():
        return install
    return f"exp lock --constraints {shlex.quote(str(lock_path))} > {shlex.quote(str(constraints))} && {install}"
