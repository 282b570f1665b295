"""The import closure of custom code, found by reading files: what a target's bits depend on.

Running a custom target runs its module and every module that module imports.
The local ones (files of the user's own, not installed under a version) are
hashed into the trajectory fingerprint, so editing a helper the target imports
changes it. The rest is covered elsewhere: the standard library by the Python
version, an installed distribution by its version, which the runtime records
in the environment class (the closure only names the distributions).

Nothing is imported or executed: each module is located with the same search
order as `target_source` (the spec's folder first, then `sys.path`) and its
`import` statements are read with `ast`, wherever they stand (inside
functions, `try` blocks, `if TYPE_CHECKING:`). An import that cannot be located
(an optional dependency) is skipped. Imports made by computed names
(`importlib.import_module(name)`) cannot be seen and are not followed.

A module is classed by the file it resolves to:
- under a site-packages folder: an installed distribution, named, not followed;
- a standard-library module (by its name, `sys.stdlib_module_names`, unless the
  file lies in the spec's own folder) or a built-in: neither hashed nor named;
  the standard library's files are never read;
- anywhere else: local, hashed and followed. A distribution installed in
  editable mode resolves to its source tree and is therefore hashed: its version
  number does not change when its files do. A name the path cannot locate (an
  editable install served by an import hook) but an installed distribution
  provides is named as that distribution.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import re
import site
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from importlib.machinery import ModuleSpec
from pathlib import Path

__all__ = ["SourceClosure", "source_closure"]


@dataclass(frozen=True)
class SourceClosure:
    """The local modules custom code runs, and the installed distributions it imports."""

    sources: dict[str, str]
    """Dotted module name -> SHA-256 of its file's bytes."""
    distributions: tuple[str, ...]
    """Normalised names of the installed distributions imported, sorted."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _site_dirs() -> tuple[Path, ...]:
    found = {*site.getsitepackages(), site.getusersitepackages()}
    found |= {p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")}
    return tuple(Path(p).resolve() for p in found if p)


@functools.cache
def _providers() -> dict[str, list[str]]:
    """Top-level import name -> distributions: read once per process, only when needed."""
    return metadata.packages_distributions()


def _distribution(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def _lists(distribution: metadata.Distribution, record: str) -> bool:
    """Whether the distribution's RECORD lists the file (a path relative to its site folder)."""
    text = distribution.read_text("RECORD") or ""
    return f"\n{record}," in f"\n{text}"


def _within(path: Path, folders: Iterable[Path]) -> Path | None:
    return next((folder for folder in folders if path.is_relative_to(folder)), None)


class _Walk:
    """One closure walk; resolved modules are cached so cycles and shared imports cost nothing."""

    def __init__(self, search: Sequence[Path | str]) -> None:
        self.top = [str(p) for p in search] + [p or "." for p in sys.path]
        self.site = _site_dirs()
        self.own = tuple(Path(p).resolve() for p in search)
        self.specs: dict[str, ModuleSpec | None] = {}
        self.kinds: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        self.distributions: set[str] = set()
        self.queue: list[tuple[str, Path]] = []

    def find(self, name: str) -> ModuleSpec | None:
        if name not in self.specs:
            parent, _, _ = name.rpartition(".")
            if not parent:
                locations: list[str] | None = self.top
            else:
                above = self.find(parent)
                locations = list(above.submodule_search_locations or []) if above else None
            try:
                found = importlib.machinery.PathFinder.find_spec(name, locations) if locations else None
            except (ImportError, ValueError, OSError):
                found = None
            self.specs[name] = found
        return self.specs[name]

    def _name_distribution(self, top: str, file: Path | None) -> bool:
        """Record the distribution that provides `top` (and `file`); False when none does."""
        folder = _within(file, self.site) if file is not None else None
        record = file.relative_to(folder).as_posix() if file is not None and folder is not None else None
        guess = _distribution(top)
        if guess is not None and record is not None and _lists(guess, record):
            candidates = [guess.name]  # the usual case, without reading every distribution's metadata
        else:
            candidates = sorted(set(_providers().get(top, ())))
            if record is not None and len(candidates) > 1:
                owners = [c for c in candidates if (d := _distribution(c)) is not None and _lists(d, record)]
                candidates = owners or candidates
        self.distributions.update(_normalise(c) for c in candidates)
        return bool(candidates)

    def _classify(self, name: str) -> str:
        """The module's kind: `local` (queued to read), `package` (a namespace: go on) or `outside` (stop)."""
        spec = self.find(name)
        top = name.partition(".")[0]
        if spec is None:
            if name == top and top not in sys.builtin_module_names and top not in sys.stdlib_module_names:
                self._name_distribution(top, None)
            return "outside"
        if spec.origin in ("built-in", "frozen"):
            return "outside"
        if not spec.has_location or not spec.origin:  # a namespace package: no file of its own
            return "package"
        file = Path(spec.origin).resolve()
        if _within(file, self.site):
            if self._name_distribution(top, file):
                return "outside"
        elif top in sys.stdlib_module_names and not _within(file, self.own):
            return "outside"  # the standard library, by name; a file of that name beside the spec is local
        self.queue.append((name, file))
        return "local"

    def visit(self, name: str) -> None:
        """Follow `import name`: each package on the way, then the module itself."""
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            if prefix not in self.kinds:
                self.kinds[prefix] = self._classify(prefix)
            if self.kinds[prefix] == "outside":
                return

    def read(self, name: str, file: Path) -> None:
        """Hash a local module and visit what it imports."""
        data = file.read_bytes()
        self.sources[name] = hashlib.sha256(data).hexdigest()
        if file.suffix != ".py":
            return
        try:
            tree = ast.parse(data, filename=str(file))
        except (SyntaxError, ValueError):
            return  # it cannot run either; its bytes are fingerprinted all the same
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.visit(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, package)
                if base is None:
                    continue
                self.visit(base)
                if self.kinds.get(base) not in ("local", "package"):
                    continue
                for alias in node.names:
                    # `from pkg import nets` may name a submodule; an attribute is simply not found.
                    if alias.name != "*" and self.find(f"{base}.{alias.name}") is not None:
                        self.visit(f"{base}.{alias.name}")

    def run(self, modules: Iterable[str]) -> None:
        for module in modules:
            self.visit(module)
        while self.queue:
            self.read(*self.queue.pop())


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The module a `from ... import` reads from, or None for a relative import past the top."""
    if not node.level:
        return node.module
    parts = package.split(".") if package else []
    if node.level - 1 >= len(parts):
        return None
    base = ".".join(parts[: len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def source_closure(modules: Iterable[str], search: Sequence[Path | str] = ()) -> SourceClosure:
    """The local modules `modules` run (themselves included), hashed, and the distributions they import.

    Raises `OSError` when a local module found cannot be read.
    """
    walk = _Walk(search)
    walk.run(modules)
    return SourceClosure(dict(sorted(walk.sources.items())), tuple(sorted(walk.distributions)))
