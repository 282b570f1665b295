"""Safetensors weight files: a model folder's tensors by name, memory-mapped, and their writer.

Reading parses headers only and maps the data, so a large checkpoint costs no
host copy until a tensor is placed on a device. Files are checked as strictly as
the reference implementation checks them (contiguous offsets covering the data
exactly), so a truncated download is named here instead of loading as garbage.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from expspec.atomic_files import write_atomic
from expspec.runtime.mapped_pages import release_mapped_pages
from expspec.runtime.models.common import ModelError

__all__ = ["SafetensorsFolder", "WeightFileError", "weight_files", "write_safetensors", "write_sharded"]

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
_MAX_HEADER = 100_000_000  # the reference's limit: a longer header means a damaged file

# The reference's dtype enum, largest first: it writes tensors in this order (then
# by name), which keeps every tensor aligned to its item size. `=` separates the
# code from a numpy type string or an `ml_dtypes` name.
_TABLE = "U64=<u8 I64=<i8 F64=<f8 C64=<c8 F32=<f4 U32=<u4 I32=<i4 BF16=bfloat16 F16=<f2 U16=<u2 I16=<i2 "
_TABLE += "F8_E4M3=float8_e4m3fn F8_E5M2=float8_e5m2 I8=i1 U8=u1 BOOL=?"
_DTYPES = {code: np.dtype(getattr(ml_dtypes, kind, kind)) for code, kind in (x.split("=") for x in _TABLE.split())}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_RANK = {code: rank for rank, code in enumerate(_DTYPES)}


class WeightFileError(ModelError):
    """A weight file or index is missing or damaged; the message names the file."""


class _Entry(NamedTuple):
    file: Path
    code: str
    shape: tuple[int, ...]
    begin: int  # absolute byte offsets in `file`
    end: int


def weight_files(folder: Path) -> tuple[Path, ...]:
    """`model.safetensors`, or the shards `model.safetensors.index.json` names (sorted, unique).

    A single file wins over an index, as Hugging Face's loader decides.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightFileError(f"{folder}: not a folder")
    if (folder / SINGLE).is_file():
        return (folder / SINGLE,)
    index = _weight_map(folder)
    if index is None:
        raise WeightFileError(f"{folder}: no {SINGLE} or {INDEX}")
    files = tuple(folder / name for name in sorted(set(index.values())))
    for path in files:
        if not path.is_file():
            raise WeightFileError(f"{folder / INDEX}: names shard {path.name}, which is not in {folder}")
    return files


def _weight_map(folder: Path) -> dict[str, str] | None:
    path = folder / INDEX
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightFileError(f"{path}: cannot read: {err}") from None
    mapping = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(mapping, dict) or not mapping or not all(isinstance(v, str) for v in mapping.values()):
        raise WeightFileError(f"{path}: weight_map must map tensor names to shard file names")
    for name in mapping.values():
        if Path(name).name != name or name in ("", ".", ".."):
            raise WeightFileError(f"{path}: shard {name!r} must be a file name inside the folder")
    return mapping


class SafetensorsFolder:
    """Every tensor of a model folder by name, memory-mapped: nothing is read until asked.

    `folder` may also be one `.safetensors` file (e.g. `adapter_model.safetensors`).
    """

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        files = (folder,) if folder.is_file() else weight_files(folder)
        self._where: dict[str, _Entry] = {}
        self._maps: dict[Path, np.memmap] = {}
        for path in files:
            _read_header(path, self._where)
        index = None if folder.is_file() or files[0].name == SINGLE else _weight_map(folder)
        for name, shard in (index or {}).items():
            if name not in self._where or self._where[name].file.name != shard:
                raise WeightFileError(f"{folder / INDEX}: places '{name}' in {shard}, which does not hold it")

    def names(self) -> list[str]:
        """Every tensor name, sorted."""
        return sorted(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._where[name].shape

    def dtype(self, name: str) -> np.dtype:
        """The stored dtype (`ml_dtypes.bfloat16` for BF16)."""
        return _DTYPES[self._where[name].code]

    def file_of(self, name: str) -> Path:
        return self._where[name].file

    def read(self, name: str) -> np.ndarray:
        """A read-only `np.memmap` view in the stored dtype: no copy is made."""
        path, code, shape, begin, end = self._where[name]
        if path not in self._maps:
            try:
                self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
            except (OSError, ValueError) as err:
                raise WeightFileError(f"{path}: cannot map: {err}") from None
        return self._maps[path][begin:end].view(_DTYPES[code]).reshape(shape)

    def release_pages(self) -> None:
        """Hand back the resident pages of the mapped files: a tensor read once (copied to its
        device) must not stay counted in RSS beside its copy, or loading costs twice the weights."""
        release_mapped_pages([str(Path(path).resolve()) for path in self._maps])

    def close(self) -> None:
        """Drop this object's mappings; arrays already returned keep theirs alive."""
        self._maps.clear()

    def __enter__(self) -> SafetensorsFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _read_header(path: Path, where: dict[str, _Entry]) -> None:
    """Check one file's header against its size and put its tensors into `where`."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 0 < length <= min(_MAX_HEADER, size - 8):
                raise WeightFileError(f"{path}: not a safetensors file: bad header length ({size} bytes in all)")
            raw = handle.read(length)
    except OSError as err:
        raise WeightFileError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        header = json.loads(raw.decode("utf-8"))  # a name given twice leaves a gap, found below
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightFileError(f"{path}: not a safetensors file: header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{path}: not a safetensors file: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightFileError(f"{path}: __metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        code, shape, begin, end = _tensor_info(path, name, info)
        if name in where:
            raise WeightFileError(f"{path}: tensor '{name}' is also in {where[name].file}")
        where[name] = _Entry(path, code, shape, 8 + length + begin, 8 + length + end)
        spans.append((begin, end, name))
    offset, data = 0, size - 8 - length
    for begin, end, name in sorted(spans):
        if begin != offset:
            raise WeightFileError(f"{path}: tensor '{name}' starts at {begin}, not at {offset} (overlap or gap)")
        offset = end
    if offset != data:
        what = "truncated: " if offset > data else "stray bytes: "
        raise WeightFileError(f"{path}: {what}the header says {offset} bytes of tensor data, the file holds {data}")


def _tensor_info(path: Path, name: str, info: Any) -> tuple[str, tuple[int, ...], int, int]:
    """A header entry's (dtype code, shape, begin, end), checked against each other."""
    bad = f"{path}: tensor '{name}'"
    if not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
        raise WeightFileError(f"{bad}: unknown or missing dtype (known: {', '.join(sorted(_DTYPES))})")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise WeightFileError(f"{bad}: shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
        raise WeightFileError(f"{bad}: data_offsets must be two non-negative integers")
    if offsets[1] - offsets[0] != math.prod(shape) * _DTYPES[info["dtype"]].itemsize:
        raise WeightFileError(f"{bad}: data_offsets {offsets} do not hold shape {shape} of {info['dtype']}")
    return info["dtype"], tuple(shape), offsets[0], offsets[1]


def write_safetensors(path: Path, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
    """Write one safetensors file atomically (temp file + `os.replace`).

    Laid out as the reference writes it: tensors largest dtype first, then by
    name (one dtype: by name), C-contiguous little-endian, the header padded with
    spaces to a multiple of 8 bytes; metadata keys sorted.
    """
    _write_file(Path(path), _arrays(Path(path), tensors), metadata)


def write_sharded(
    folder: Path, tensors: Mapping[str, Any], max_shard_bytes: int, metadata: Mapping[str, str] | None = None
) -> list[Path]:
    """The weight files written: `model.safetensors` when all fits in one shard, else
    `model-0000i-of-0000N.safetensors` plus `model.safetensors.index.json`.

    Tensors are packed in name order; one over `max_shard_bytes` gets a shard of
    its own. Weight files of an earlier write in `folder` are removed, so the
    folder never holds two sets. Hugging Face's loader wants `{"format": "pt"}`.
    """
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be > 0, got {max_shard_bytes}")
    folder = Path(folder)
    arrays = _arrays(folder, tensors)  # all checked before anything is written
    shards: list[list[str]] = [[]]
    size = 0
    for name in sorted(arrays):
        if shards[-1] and size + arrays[name].nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += arrays[name].nbytes
    count = len(shards)
    names = [SINGLE] if count == 1 else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    for file_name, members in zip(names, shards, strict=True):
        _write_file(folder / file_name, {name: arrays[name] for name in members}, metadata)
    if count > 1:
        weight_map = {name: file_name for file_name, members in zip(names, shards) for name in members}
        index = {"metadata": {"total_size": sum(a.nbytes for a in arrays.values())}, "weight_map": weight_map}
        write_atomic(folder / INDEX, [(json.dumps(index, indent=2, sort_keys=True) + "\n").encode("utf-8")])
    keep = {*names, INDEX} if count > 1 else {SINGLE}
    for stale in folder.iterdir():
        if stale.name not in keep and (stale.name in (SINGLE, INDEX) or _SHARD.fullmatch(stale.name)):
            stale.unlink()
    return [folder / name for name in names]


def _arrays(path: Path, tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each tensor as a C-contiguous little-endian array of a dtype safetensors stores."""
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise WeightFileError(f"{path}: {name!r} cannot name a tensor")
        array = np.asarray(value)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        if array.dtype not in _CODES:
            raise WeightFileError(f"{path}: tensor '{name}' has dtype {array.dtype}, which safetensors cannot store")
        arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")  # keeps 0-d arrays 0-d
    return arrays


def _write_file(path: Path, arrays: dict[str, np.ndarray], metadata: Mapping[str, str] | None) -> None:
    order = sorted(arrays, key=lambda name: (_RANK[_CODES[arrays[name].dtype]], name))
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise WeightFileError(f"{path}: metadata must map strings to strings")
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name in order:
        shape, size = list(arrays[name].shape), arrays[name].nbytes
        header[name] = {"dtype": _CODES[arrays[name].dtype], "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    data = [arrays[name].reshape(-1).view(np.uint8).data for name in order]
    write_atomic(path, [struct.pack("<Q", len(raw)) + raw, *data])
