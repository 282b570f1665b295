"""scikit-learn's bundled 8x8 digits: a real dataset that needs no download."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from expspec.runtime.data.base import ArraySource, DataContext
from expspec.runtime.types import DataInfo
from expspec.spec.data import Digits

__all__ = ["build_digits"]


def _load() -> tuple[np.ndarray, np.ndarray]:
    """The arrays `sklearn.datasets.load_digits` returns.

    Read straight from the CSV scikit-learn ships: importing scikit-learn
    costs over a second, several times the rest of the run's start-up.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package, runs nothing
    if spec is not None and spec.origin:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",")
            return table[:, :-1], table[:, -1].astype(int)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def build_digits(spec: Digits, ctx: DataContext) -> ArraySource:
    """Pixels scaled to [0, 1] so the default learning rates suit them."""
    data, target = (np.ascontiguousarray(a) for a in _load())
    fingerprint = hashlib.sha256(data.tobytes() + target.tobytes()).hexdigest()
    x = (data / 16.0).astype(np.float32)
    y = target.astype(np.int32)
    info = DataInfo(task="classification", input_dim=x.shape[1], num_classes=10)
    return ArraySource(
        x,
        y,
        info,
        fingerprint,
        batch_size=spec.batch_size,
        test_fraction=spec.test_fraction,
        seeds=ctx.seeds,
    )
