"""One file of a corpus read through `datasets`: opened, validated, gathered by index.

`corpus.py` composes parts (these, and ArrayRecord's in `arrayrecord_part.py`)
into one record space. Reading goes through `datasets` over memory-mapped Arrow,
never a hand-written parser; the small line scans here run only after the
library has refused a file, to name the line at fault in the error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from expspec.runtime.data.base import DataError

__all__ = [
    "MESSAGES",
    "TEXT",
    "ArrowPart",
    "EmptyPart",
    "Part",
    "bad_value",
    "check_arrow_part",
    "field_kind",
    "load_arrow_part",
    "one_line",
]

TEXT = "text"
"""A field holding one string per record."""
MESSAGES = "messages"
"""A field holding a chat: a list of {role, content} with string values."""

Columns = Mapping[str, tuple[str, str, str]]
"""spec key -> (field name asked for, column read, TEXT or MESSAGES)."""

_BUILDERS = {"jsonl": "json", "parquet": "parquet", "arrow": "arrow", "text": "text"}
_NAMES = {"jsonl": "JSON Lines", "parquet": "Parquet", "arrow": "Arrow", "text": "text", "saved": "a saved dataset"}
_STRING_DTYPES = frozenset({"string", "large_string", "string_view"})
_SCAN_BATCH = 1024
"""Records per batch when a column must be scanned."""


def field_kind(spec_key: str) -> str:
    """TEXT or MESSAGES, from the spec key that names the field (`data.messages_field` is chat)."""
    return MESSAGES if spec_key.endswith("messages_field") else TEXT


def one_line(text: str) -> str:
    """`text` on one line: library messages may span several, a user-facing error may not."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class Part(Protocol):
    """One opened file (or saved folder): its records, numbered from 0."""

    path: Path
    """What messages name: the file, or a saved dataset's folder."""
    files: tuple[Path, ...]
    """Whose bytes are this part's content (for the fingerprint)."""
    mapped: tuple[str, ...]
    """Files this part reads memory-mapped (a conversion may live in the cache instead)."""

    def __len__(self) -> int: ...

    def take(self, local: list[int], columns: tuple[str, ...]) -> list[dict[str, Any]]: ...


class EmptyPart:
    """A file with no records: it still counts in the fingerprint."""

    def __init__(self, path: Path) -> None:
        self.path, self.files, self.mapped = path, (path,), ()

    def __len__(self) -> int:
        return 0

    def take(self, local: list[int], columns: tuple[str, ...]) -> list[dict[str, Any]]:
        raise IndexError("an empty file has no records")


class ArrowPart:
    """A memory-mapped `datasets.Dataset` over one file or saved folder."""

    def __init__(self, path: Path, files: tuple[Path, ...], dataset: Any) -> None:
        self.path, self.files, self.dataset = path, files, dataset
        self.mapped = tuple(entry["filename"] for entry in dataset.cache_files)
        self._views: dict[tuple[str, ...], Any] = {}

    def __len__(self) -> int:
        return self.dataset.num_rows

    def take(self, local: list[int], columns: tuple[str, ...]) -> list[dict[str, Any]]:
        view = self._views.get(columns)
        if view is None:  # a column subset shares the mapped table; made once per field set
            view = self._views[columns] = self.dataset.select_columns(list(columns))
        batch = view[local]
        return [dict(zip(columns, values, strict=True)) for values in zip(*(batch[c] for c in columns))]


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else f"a {type(value).__name__}"


def bad_value(value: Any, kind: str) -> str | None:
    """Why `value` cannot be a field of `kind`, or None when it can."""
    if kind == TEXT:
        return None if isinstance(value, str) else f"is {_describe(value)}, not a string"
    if not isinstance(value, list):
        return f"is {_describe(value)}, not a list of {{role, content}} messages"
    for number, message in enumerate(value, 1):
        if not isinstance(message, dict):
            return f"message {number} is {_describe(message)}, not an object with role and content"
        for name in ("role", "content"):
            if not isinstance(message.get(name), str):
                return f"message {number} has no string '{name}'"
    return None


def _datasets() -> Any:
    """`datasets`, offline and quiet: local files need no network and the run's stderr stays clean."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    datasets.config.HF_HUB_OFFLINE = True  # in case something imported it before the variable was set
    datasets.config.HF_DATASETS_OFFLINE = True
    datasets.disable_progress_bars()
    # Errors are reworded into DataError; the library's own log lines would only duplicate them.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    return datasets


def _first_bad_utf8_line(path: Path) -> int | None:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _first_bad_json_line(path: Path) -> tuple[int, str] | None:
    """(line, why) of the first line that is not a JSON object, for a library that did not say."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as err:
                return number, getattr(err, "msg", str(err))
            if not isinstance(value, dict):
                return number, "not a JSON object"
    return None


def _json_error(path: Path) -> tuple[int, str] | None:
    first_line = _first_bad_json_line(path)
    if first_line is None:
        return None
    try:  # a .json file may be one document (an array of records) rather than JSON Lines
        json.loads(path.read_bytes())
    except json.JSONDecodeError as err:
        return (err.lineno, err.msg) if first_line[0] == 1 else first_line
    except (ValueError, OSError):
        return first_line
    return None


def _only_whitespace(path: Path) -> bool:
    with open(path, "rb") as handle:
        return all(not chunk.strip() for chunk in iter(lambda: handle.read(1 << 20), b""))


def _read_error(err: BaseException, path: Path, fmt: str, key: str) -> DataError:
    cause = err.__cause__ if err.__cause__ is not None else err
    if isinstance(cause, FileNotFoundError):
        return DataError(f"{key}: file not found: '{path}'")
    if isinstance(cause, UnicodeDecodeError) and path.is_file():
        line = _first_bad_utf8_line(path)
        where = f"line {line} of '{path}'" if line else f"'{path}'"
        return DataError(f"{key}: {where} is not UTF-8 text")
    if fmt == "jsonl" and path.is_file():
        found = _json_error(path)
        if found is not None:
            return DataError(one_line(f"{key}: line {found[0]} of '{path}' is not valid JSON Lines ({found[1]})"))
    if isinstance(cause, OSError) and cause.strerror:
        return DataError(f"{key}: cannot read '{path}': {cause.strerror}")
    return DataError(one_line(f"{key}: cannot read '{path}' as {_NAMES[fmt]}: {cause}"))


def load_arrow_part(
    path: Path, fmt: str, *, sample_by: str, cache: Path, key: str, rehash: bool
) -> ArrowPart | EmptyPart:
    """One file (or saved folder) as a memory-mapped dataset, read by `datasets`.

    Arrow stream files are mapped in place; other formats are converted once
    into `cache`/datasets by the library's builder and mapped from there.
    """
    import pyarrow as pa

    datasets = _datasets()
    failures = (datasets.exceptions.DatasetsError, OSError, ValueError, pa.ArrowException)
    try:
        if fmt == "saved":
            dataset = datasets.load_from_disk(str(path))
            if not isinstance(dataset, datasets.Dataset):
                raise DataError(f"{key}: '{path}' holds several splits; name one split's folder")
            files = tuple(Path(entry["filename"]) for entry in dataset.cache_files)
            return ArrowPart(path, files, dataset.with_format(None))
        if fmt == "arrow":
            try:
                return ArrowPart(path, (path,), datasets.Dataset.from_file(str(path)))
            except pa.ArrowInvalid:
                pass  # the Arrow IPC file format (not a stream): the builder converts it
        # Conversion reads JSON in 2 MiB chunks (the 10 MiB default doubled the peak memory of a start).
        options = {"sample_by": sample_by} if fmt == "text" else {"chunksize": 2 << 20} if fmt == "jsonl" else {}
        dataset = datasets.load_dataset(
            _BUILDERS[fmt],
            data_files=str(path),
            split="train",
            cache_dir=str(cache / "datasets"),
            download_mode="force_redownload" if rehash else "reuse_dataset_if_exists",
            **options,
        )
    except (StopIteration, *failures) as err:
        # The JSON builder fails on a file of blank lines (StopIteration or "no data"): no records.
        if fmt == "jsonl" and path.is_file() and _only_whitespace(path):
            return EmptyPart(path)
        raise _read_error(err, path, fmt, key) from None
    pa.default_memory_pool().release_unused()  # the conversion's buffers, kept by Arrow's pool otherwise
    return ArrowPart(path, (path,), dataset)


def _is_string(feature: Any) -> bool:
    return getattr(feature, "dtype", None) in _STRING_DTYPES and type(feature).__name__ == "Value"


def _messages_fast_ok(feature: Any, values: Any) -> bool:
    """A typed list<struct<role: string, content: string>> with no null anywhere inside."""
    inner = getattr(feature, "feature", None)
    if not isinstance(inner, dict) or not all(_is_string(inner.get(name)) for name in ("role", "content")):
        return False
    for chunk in values.chunks:
        messages = chunk.flatten()
        if messages.null_count or any(messages.field(name).null_count for name in ("role", "content")):
            return False
    return True


def _first_bad(dataset: Any, column: str, kind: str) -> tuple[int, str] | None:
    """The first record whose value is unusable; only reached when the column's type says so."""
    offset = 0
    for batch in dataset.select_columns([column]).iter(batch_size=_SCAN_BATCH):
        values = batch[column]
        for index, value in enumerate(values):
            reason = bad_value(value, kind)
            if reason is not None:
                return offset + index, reason
        offset += len(values)
    return None


def check_arrow_part(part: ArrowPart, columns: Columns) -> None:
    """Every requested field is a column with a usable value in every record.

    Column types and null counts decide from Arrow metadata in the common case;
    only a column whose type is wrong is scanned, to name the first bad record.
    """
    import pyarrow.compute as pc

    dataset = part.dataset
    for spec_key, (name, column, kind) in columns.items():
        if column not in dataset.column_names:
            have = ", ".join(dataset.column_names) or "none"
            raise DataError(one_line(f"{spec_key}: no field '{name}' in '{part.path}' (its fields: {have})"))
        values = dataset.data.column(column)
        if values.null_count:
            first = pc.index(pc.is_null(values), True).as_py()
            raise DataError(f"{spec_key}: record {first + 1} of '{part.path}' has no '{name}'")
        feature = dataset.features[column]
        if _is_string(feature) if kind == TEXT else _messages_fast_ok(feature, values):
            continue
        bad = _first_bad(dataset, column, kind)
        if bad is not None:
            raise DataError(one_line(f"{spec_key}: record {bad[0] + 1} of '{part.path}': '{name}' {bad[1]}"))
