"""Local corpora as random-access records, read through the field's own libraries.

JSON Lines, Parquet, Arrow, plain text and `save_to_disk` folders go through
Hugging Face `datasets` (memory-mapped Arrow, so resident memory does not grow
with the corpus); ArrayRecord goes through `array_record`'s random-access data
source. Each file is opened as its own dataset so every record knows its file
and record number, which is what an error message about bad data must name.
Everything a run will read is validated at open, so bad data fails before the
first step instead of hours into training.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from expspec.runtime.data.arrayrecord_part import ArrayRecordPart, check_arrayrecord_part, open_arrayrecord_part
from expspec.runtime.data.base import DataError
from expspec.runtime.data.corpus_parts import (
    MESSAGES,
    EmptyPart,
    Part,
    check_arrow_part,
    field_kind,
    load_arrow_part,
    one_line,
)
from expspec.runtime.mapped_pages import release_mapped_pages

__all__ = ["FORMATS", "Records", "detect_format", "expand_files", "open_records"]

FORMATS = ("jsonl", "parquet", "arrow", "text", "saved", "arrayrecord")
"""Corpus formats; "saved" is a folder written by `datasets`' `save_to_disk`."""

_SUFFIXES = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".array_record": "arrayrecord",
    ".arrayrecord": "arrayrecord",
}
_GLOB_CHARS = frozenset("*?[")


def _is_glob(pattern: str) -> bool:
    return any(char in _GLOB_CHARS for char in pattern)


def expand_files(patterns: Sequence[str], spec_dir: Path, key: str) -> list[Path]:
    """The files `patterns` name, in order: globs expanded and sorted, duplicates dropped.

    Relative patterns resolve against the spec's folder (not the working
    directory), so a spec means the same data wherever it is run from. A
    pattern that matches nothing is an error rather than an empty corpus.
    """
    if not patterns:
        raise DataError(f"{key}: no files given")
    found: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern).expanduser()
        full = path if path.is_absolute() else Path(spec_dir) / path
        if full.exists() or not _is_glob(pattern):  # a file named with brackets is taken literally
            matches = [str(full)] if full.exists() else []
        elif path.is_absolute():
            matches = sorted(glob.glob(str(path), recursive=True))
        else:  # root_dir keeps glob characters in the spec's own folder name literal
            found_here = glob.glob(str(path), root_dir=spec_dir, recursive=True)
            matches = [os.path.join(spec_dir, m) for m in sorted(found_here)]
        candidates = [Path(m) for m in matches]
        if not candidates:
            raise DataError(f"{key}: no file matches '{pattern}'")
        for candidate in candidates:
            absolute = Path(os.path.abspath(candidate))
            identity = absolute.resolve()
            if identity not in seen:
                seen.add(identity)
                found.append(absolute)
    return found


def _saved_folder(path: Path, key: str) -> bool:
    """Whether `path` is a `save_to_disk` folder of one dataset; a folder of splits is refused."""
    if (path / "state.json").is_file() or (path / "dataset_info.json").is_file():
        return True
    if (path / "dataset_dict.json").is_file():
        splits = ", ".join(sorted(p.name for p in path.iterdir() if p.is_dir())) or "none"
        raise DataError(f"{key}: '{path}' holds several splits ({splits}); name one split's folder")
    return False


def _format_of(path: Path, key: str) -> str:
    if path.is_dir():
        if _saved_folder(path, key):
            return "saved"
        raise DataError(f"{key}: '{path}' is a folder but not a datasets save_to_disk folder (no state.json)")
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    if ".array_record-" in name:  # sharded names: corpus.array_record-00000-of-00008
        return "arrayrecord"
    known = " ".join(_SUFFIXES)
    raise DataError(f"{key}: cannot tell the format of '{path}' (known suffixes: {known}; or a save_to_disk folder)")


def detect_format(files: Sequence[Path], key: str) -> str:
    """The one format of all `files`, from their suffixes (a `save_to_disk` folder is "saved")."""
    if not files:
        raise DataError(f"{key}: no files given")
    first = _format_of(files[0], key)
    for path in files[1:]:
        fmt = _format_of(path, key)
        if fmt != first:
            raise DataError(f"{key}: mixed formats: '{files[0]}' is {first} but '{path}' is {fmt}")
    return first


class Records:
    """Random access to the records of one or more files, memory-mapped, in file order.

    Records are numbered 0..len-1 across the files; `rows` gathers any subset
    in any order without holding the corpus in Python objects, and `locate`
    turns an index back into (file, record number) for messages.
    """

    files: tuple[Path, ...]
    """The files whose bytes are the content, for the fingerprint. For a saved
    dataset: its data .arrow files in the order of state.json, never
    dataset_info.json or state.json, which carry timestamps and fingerprints."""

    def __init__(self, parts: Sequence[Part], aliases: Mapping[str, str]) -> None:
        self._parts = tuple(parts)
        self._aliases = dict(aliases)
        self._starts = np.cumsum([0] + [len(part) for part in self._parts], dtype=np.int64)
        self.files = tuple(path for part in self._parts for path in part.files)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _parts_of(self, indices: np.ndarray) -> np.ndarray:
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"record indices must lie in [0, {len(self)})")
        return np.searchsorted(self._starts, indices, side="right") - 1

    def rows(self, indices: np.ndarray, fields: Sequence[str]) -> list[dict[str, Any]]:
        """The records at `indices` (in the order given), each a dict of the requested fields."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        owners = self._parts_of(indices)
        columns = tuple(dict.fromkeys(self._aliases.get(name, name) for name in fields))
        out: list[dict[str, Any]] = [{}] * len(indices)
        for owner in np.unique(owners):
            where = np.flatnonzero(owners == owner)
            local = (indices[where] - self._starts[owner]).tolist()
            records = self._parts[owner].take(local, columns)
            for position, record in zip(where.tolist(), records, strict=True):
                out[position] = {name: record[self._aliases.get(name, name)] for name in fields}
        return out

    def release_pages(self) -> int:
        """Drop this process's resident pages of the mapped files; returns the bytes of mappings visited.

        Reading leaves touched pages counted in RSS as file-backed memory
        (clean page cache the kernel can reclaim); over an epoch that adds up
        to the corpus size. Calling this every few hundred batches keeps RSS
        flat; the next read faults the same bytes back, so rows cannot change.
        """
        return release_mapped_pages([path for part in self._parts for path in part.mapped])

    def locate(self, index: int) -> tuple[Path, int]:
        """(file, 1-based record number within it) of record `index`; for a saved dataset, its folder."""
        owner = int(self._parts_of(np.asarray([index], dtype=np.int64))[0])
        return self._parts[owner].path, int(index - self._starts[owner]) + 1


def _aliases(fmt: str, fields: Mapping[str, str]) -> dict[str, str]:
    """Requested field name -> column; plain text has the single column "text"."""
    if fmt != "text":
        return {name: name for name in fields.values()}
    for spec_key in fields:
        if field_kind(spec_key) == MESSAGES or len(set(fields.values())) > 1:
            raise DataError(
                f"{spec_key}: plain text files hold only text; prompt/completion and chat records "
                "need JSON Lines, Parquet, Arrow, a saved dataset or ArrayRecord"
            )
    return {name: "text" for name in fields.values()}


def _open_part(path: Path, fmt: str, *, sample_by: str, cache: Path, key: str, rehash: bool) -> Part:
    if fmt == "saved":
        if not path.is_dir() or not _saved_folder(path, key):
            raise DataError(f"{key}: '{path}' is not a datasets save_to_disk folder")
    elif path.is_dir():
        raise DataError(f"{key}: '{path}' is a folder; only format 'saved' reads folders")
    if fmt in ("jsonl", "text") and path.is_file() and path.stat().st_size == 0:
        return EmptyPart(path)
    if fmt == "arrayrecord":
        return open_arrayrecord_part(path, key)
    return load_arrow_part(path, fmt, sample_by=sample_by, cache=cache, key=key, rehash=rehash)


def open_records(
    files: Sequence[Path],
    fmt: str,
    *,
    sample_by: str,
    fields: Mapping[str, str],
    cache: Path,
    key: str,
    rehash: bool = False,
) -> Records:
    """The records of `files`, validated for the fields a run will read.

    `fields` maps spec keys to field names, e.g. {"data.text_field": "text"};
    a key ending in "messages_field" is a chat field (a list of {role, content}),
    any other a text field. `sample_by` splits plain text by "line",
    "paragraph" or "document" (one per file), as `datasets`' text builder
    does; plain text records have the single field "text", onto which any
    requested name maps. Conversions (JSON Lines, Parquet, Arrow file format)
    are cached by `datasets` under `cache`/datasets; `rehash=True` rebuilds
    them, as it re-reads files for the fingerprint. Bad data raises DataError
    naming the spec key, the file and the record number.
    """
    if fmt not in FORMATS:
        raise DataError(f"{key}: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if not files:
        raise DataError(f"{key}: no files given")
    aliases = _aliases(fmt, fields)
    kinds = {spec_key: field_kind(spec_key) for spec_key in fields}
    columns = {spec_key: (name, aliases[name], kinds[spec_key]) for spec_key, name in fields.items()}
    parts: list[Part] = []
    for path in files:
        part = _open_part(Path(path), fmt, sample_by=sample_by, cache=cache, key=key, rehash=rehash)
        if isinstance(part, ArrayRecordPart):
            check_arrayrecord_part(part, columns, cache=cache, rehash=rehash)
        elif len(part) and fmt != "text":  # plain text is strings by construction
            check_arrow_part(part, columns)
        parts.append(part)
    if not sum(len(part) for part in parts):
        where = f"'{files[0]}'" if len(files) == 1 else f"the {len(files)} files (first '{files[0]}')"
        raise DataError(one_line(f"{key}: no records in {where}"))
    return Records(parts, aliases)
