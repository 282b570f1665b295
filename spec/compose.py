"""Composing a spec: `extends` chains, command-line overrides, and where each key came from.

`extends` may only name files inside the folder of the spec being loaded (or
below it): a spec from an untrusted source cannot make `exp` read files
elsewhere on the machine as configuration.
"""

from __future__ import annotations

import copy
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .document import Document, read_document
from .errors import NO_VALUE, Problem, SpecError
from .overrides import Override
from .toml_lines import KeyPath

__all__ = ["COMMAND_LINE", "Composed", "Origin", "SourceMap", "apply_override", "compose"]

COMMAND_LINE = "<command line>"
MAX_EXTENDS = 16


@dataclass(frozen=True)
class Origin:
    """Where a value was written: for error lines and for relative paths."""

    file: str
    line: int | None
    folder: Path


@dataclass
class SourceMap:
    """Key path -> origin, for the composed document."""

    entries: dict[KeyPath, Origin] = field(default_factory=dict)

    def add(self, doc: Document) -> None:
        folder = doc.path.parent
        for path, line in doc.lines.items():
            self.entries[path] = Origin(doc.file, line, folder)

    def prune(self, prefix: KeyPath) -> None:
        """Forget everything under `prefix` (its value was replaced whole)."""
        n = len(prefix)
        for path in [p for p in self.entries if p[:n] == prefix]:
            del self.entries[path]

    def locate(self, path: KeyPath) -> Origin | None:
        """The origin of `path`, or of its nearest enclosing key.

        A flattened name (`seeds."data.shuffle"`) may have been written as a
        dotted key (`data.shuffle = 1` under `[seeds]`): both spellings are tried.
        """
        exact = self.entries.get(tuple(path))
        if exact is not None:
            return exact
        dotted = tuple(q for p in path for q in (p.split(".") if isinstance(p, str) else [p]))
        for end in range(len(dotted), 0, -1):
            origin = self.entries.get(dotted[:end])
            if origin is not None:
                return origin
        return None


@dataclass(frozen=True)
class Composed:
    """A spec document after `extends` and overrides, before validation."""

    data: dict[str, Any]
    sources: SourceMap
    main: Document
    files: tuple[str, ...]
    """Every file read, the main spec first, then the files it extends."""


def _kind_changes(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return "kind" in old and "kind" in new and old["kind"] != new["kind"]


def _merge(base: dict[str, Any], child: dict[str, Any], at: KeyPath, replaced: list[KeyPath]) -> dict[str, Any]:
    """Deep-merge `child` over `base`; tables merge, everything else replaces.

    A table whose `kind` changes is replaced whole: the fields of an MLP make no
    sense inside a transformer.
    """
    out = dict(base)
    for key, value in child.items():
        old = out.get(key)
        path = (*at, key)
        if isinstance(old, dict) and isinstance(value, dict) and not _kind_changes(old, value):
            out[key] = _merge(old, value, path, replaced)
        else:
            if key in out:
                replaced.append(path)
            out[key] = value
    return out


def _display(parent_file: str, relative: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(parent_file.replace(os.sep, "/")), relative))


def _compose(file: str, chain: tuple[Path, ...]) -> tuple[dict[str, Any], SourceMap, tuple[str, ...], Document]:
    doc = read_document(file)
    data = dict(doc.data)
    extends = data.pop("extends", None)
    sources = SourceMap()
    if extends is None:
        sources.add(doc)
        return data, sources, (doc.file,), doc

    line = doc.lines.get(("extends",))

    def fail(message: str, got: Any = NO_VALUE) -> SpecError:
        return SpecError([Problem(doc.file, line, "extends", message, got)])

    if not isinstance(extends, str) or not extends.strip() or "\x00" in extends or len(extends) > 1024:
        raise fail("must be the relative path of another spec file", extends)
    root = (chain[0] if chain else doc.path).parent
    try:
        target = (doc.path.parent / extends).resolve()
        exists = target.is_file()
    except OSError as err:
        raise fail(f"cannot be used: {err.strerror or err}", extends) from None
    if Path(extends).is_absolute() or not target.is_relative_to(root):
        raise fail(f"must name a file inside {root.name or root}/, the folder of the spec being loaded", extends)
    here = (*chain, doc.path)
    if target in here:
        loop = [p.name for p in here[here.index(target) :]] + [target.name]
        raise fail("cycle: " + " -> ".join(loop))
    if len(here) > MAX_EXTENDS:
        raise fail(f"more than {MAX_EXTENDS} files deep")
    if not exists:
        raise fail("no such file", extends)
    base, sources, files, _ = _compose(_display(doc.file, extends), here)
    replaced: list[KeyPath] = []
    merged = _merge(base, data, (), replaced)
    for path in replaced:
        sources.prune(path)
    sources.add(doc)
    return merged, sources, (doc.file, *files), doc


def apply_override(data: dict[str, Any], sources: SourceMap, override: Override, cwd: Path) -> None:
    """Set `override.path` in `data` (creating tables), replacing the old value whole."""
    table: Any = data
    for depth, key in enumerate(override.path[:-1]):
        nxt = table.get(key)
        if nxt is None:
            nxt = table[key] = {}
        elif not isinstance(nxt, dict):
            where = ".".join(override.path[: depth + 1])
            raise SpecError([Problem(COMMAND_LINE, None, where, f"is not a table, cannot set {override.key}", nxt)])
        table = nxt
    table[override.path[-1]] = copy.deepcopy(override.value)
    sources.prune(override.path)
    sources.entries[override.path] = Origin(COMMAND_LINE, None, cwd)


def compose(file: str | Path, overrides: tuple[Override, ...] = ()) -> Composed:
    """Read `file`, follow its `extends` chain and apply `overrides` (in order)."""
    data, sources, files, main = _compose(str(file), ())
    cwd = Path.cwd()
    for override in overrides:
        apply_override(data, sources, override, cwd)
    return Composed(data=data, sources=sources, main=main, files=files)
