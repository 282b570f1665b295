"""Where a fuzz trial runs: the example specs, a throwaway workspace, and planted modules.

Part of the spec-mutation fuzzer (`fuzz_specs.py`). Each trial copies the
folder of one example spec into a fresh temporary directory with an empty
working directory beside it, a complete spec just outside it (which an escaping
`extends` would load) and modules that leave a marker file when imported, so
any write or import shows up. `Case` is one mutated spec, and `TARGETS` the
`custom` targets a mutation may point at those modules.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import MINIMAL

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SPECS: tuple[Path, ...] = tuple(sorted(EXAMPLES.rglob("*.toml")))
"""Every example spec, including `custom/sines.toml` and the files that use `extends`."""

EVIL_MODULE = "exp_fuzz_evil"
EVIL_PACKAGE = "exp_fuzz_evilpkg"
MARKER = "IMPORTED-"
"""Prefix of the file a planted module writes when it is imported (it never may be)."""

# ---------------------------------------------------------------------------
# Cases.


@dataclass
class Case:
    """One mutated spec and what to run it with."""

    kind: str
    note: str
    text: bytes
    """The mutated spec file."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Extra files, relative to the spec's folder."""
    links: dict[str, str] = field(default_factory=dict)
    """Symbolic links to make in the spec's folder: name -> target."""
    overrides: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    """`--allow-import` prefixes that must *not* cover any planted module."""
    expect: str | None = None
    """`"accept"`, `"same"` (same output as the unmutated spec) or a text some problem line must hold."""
    spec: Path | None = None
    """The example it was made from."""


@dataclass
class Workspace:
    """A temporary copy of one example's folder, an empty working directory and planted files."""

    root: Path
    folder: Path
    main: Path
    cwd: Path

    @property
    def outside(self) -> Path:
        return self.root / "outside.toml"


@contextlib.contextmanager
def workspace(spec: Path) -> Iterator[Workspace]:
    root = Path(tempfile.mkdtemp(prefix="exp-fuzz-"))
    try:
        folder = root / "spec"
        shutil.copytree(spec.parent, folder, ignore=shutil.ignore_patterns("ci", "__pycache__", "*.pyc"))
        cwd = root / "cwd"
        cwd.mkdir()
        ws = Workspace(root=root, folder=folder, main=folder / spec.name, cwd=cwd)
        # A complete spec outside the folder: an `extends` that escaped would load it.
        ws.outside.write_text(MINIMAL.replace('name = "t"', 'name = "outside"'), encoding="utf-8")
        plant_modules(ws)
        yield ws
    finally:
        shutil.rmtree(root, ignore_errors=True)


def evil_source(marker_folder: Path, name: str) -> str:
    """A module that, when imported, writes `MARKER + name` into `marker_folder` and says so on stdout."""
    marker = marker_folder / f"{MARKER}{name}"
    return (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "print('IMPORTED " + name + "')\n\n\n"
        "def make(*args, **kwargs):\n"
        "    raise SystemExit('a custom factory was called')\n"
    )


def plant_modules(ws: Workspace) -> None:
    """Modules that leave a marker file when imported: locating them is fine, running them is not."""
    (ws.folder / f"{EVIL_MODULE}.py").write_text(evil_source(ws.root, EVIL_MODULE))
    pkg = ws.folder / EVIL_PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text(evil_source(ws.root, EVIL_PACKAGE))
    (pkg / "sub.py").write_text(evil_source(ws.root, EVIL_PACKAGE + ".sub"))
    (ws.folder / "exp_fuzz_nsdir").mkdir()  # a namespace package: no source file
    (ws.folder / "exp_fuzz_weird" / "__init__.py").mkdir(parents=True)  # a folder where a file should be
    lab = ws.folder / "lab"
    if lab.is_dir():  # examples/custom: the real targets must not run either
        for module in lab.glob("*.py"):
            name = "lab." + module.stem
            module.write_text(evil_source(ws.root, name).split("\n\n\n")[0] + "\n" + module.read_text())


# `custom` targets a mutation may use: the planted modules, the real ones, and malformed names.

TARGETS = [
    f"{EVIL_MODULE}:make",
    f"{EVIL_PACKAGE}:make",
    f"{EVIL_PACKAGE}.sub:make",
    f"{EVIL_PACKAGE}.sub.deeper:make",
    f"{EVIL_PACKAGE}.missing:make",
    f"{EVIL_MODULE}.sub:make",
    f"{EVIL_MODULE}:make.__globals__",
    "exp_fuzz_nsdir:make",
    "exp_fuzz_weird:make",
    "exp_fuzz_nonexistent:make",
    "lab.models:make_regressor",
    "lab.data:make_sines",
    "lab:make",
    "os:system",
    "subprocess:run",
    "builtins:eval",
    "this:x",
    "__main__:x",
    # malformed
    EVIL_MODULE,
    f"{EVIL_MODULE}:",
    ":make",
    f"../{EVIL_MODULE}:make",
    f"{EVIL_MODULE}.py:make",
    f"{EVIL_MODULE}:make()",
    f"{EVIL_MODULE}:make;import os",
    f"/{EVIL_MODULE}:make",
    "a b:c",
    "",
    f"{EVIL_MODULE}:make\n",
    f"{EVIL_MODULE}\x00:make",
]
