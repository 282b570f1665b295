"""Arrays from a NumPy `.npz` file, read without pickle so a data file cannot run code."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from expspec.runtime.data.base import ArraySource, DataContext, DataError, read_bytes, resolve_path
from expspec.runtime.types import DataInfo
from expspec.spec.data import Npz

__all__ = ["build_npz"]


def _array(archive: np.lib.npyio.NpzFile, name: str, path: Path) -> np.ndarray:
    if name not in archive.files:
        have = ", ".join(archive.files) or "none"
        raise DataError(f"{path}: no array named '{name}' (arrays: {have})")
    try:
        array = archive[name]
    except ValueError as err:  # object arrays need pickle, which is refused
        raise DataError(f"{path}: array '{name}' cannot be read without pickle ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: array '{name}' is unreadable: {err}") from None
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: array '{name}' has dtype {array.dtype}; need numbers")
    return array


def _load(raw: bytes, path: Path, inputs: str, targets: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not an .npz archive of named arrays")
    with archive:
        return _array(archive, inputs, path), _array(archive, targets, path)


def build_npz(spec: Npz, ctx: DataContext) -> ArraySource:
    """Integer targets make a classification problem, anything else regression.

    The file is read once and parsed from memory, so the fingerprint covers
    exactly the bytes the arrays came from.
    """
    path = resolve_path(spec.path, ctx.spec_dir)
    raw = read_bytes(path, "data.path")
    x, y = _load(raw, path, spec.inputs, spec.targets)
    if x.ndim == 0 or y.ndim == 0:
        raise DataError(f"{path}: arrays '{spec.inputs}' and '{spec.targets}' must have a leading example axis")
    n = len(x)
    if len(y) != n:
        raise DataError(f"{path}: '{spec.inputs}' has {n} examples but '{spec.targets}' has {len(y)}")
    if y.size != n:
        raise DataError(f"{path}: '{spec.targets}' must hold one target per example, got shape {y.shape}")
    x = x.reshape(n, -1).astype(np.float32)
    y = y.reshape(n)
    if y.dtype.kind in "biu":
        if n and y.min() < 0:
            raise DataError(f"{path}: '{spec.targets}' has negative class labels")
        num_classes = int(y.max()) + 1 if n else 0
        y = y.astype(np.int32)
        info = DataInfo(task="classification", input_dim=x.shape[1], num_classes=num_classes)
    else:
        y = y.astype(np.float32)
        info = DataInfo(task="regression", input_dim=x.shape[1])
    return ArraySource(
        x,
        y,
        info,
        hashlib.sha256(raw).hexdigest(),
        batch_size=spec.batch_size,
        test_fraction=spec.test_fraction,
        seeds=ctx.seeds,
    )
