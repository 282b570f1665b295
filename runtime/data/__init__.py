"""Data sources: host NumPy batches addressed by step, fingerprinted by content.

NumPy only (no JAX) so building data never touches an accelerator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from exp.spec.data import CustomData, DataSpec, Digits, Npz, Synthetic, TextChars

from .base import DataError, DataSource

__all__ = ["DataError", "DataSource", "build_data"]


def build_data(
    spec: DataSpec, seeds: Mapping[str, int], spec_dir: Path, allow_imports: Sequence[str] = ()
) -> DataSource:
    """The source for a validated `[data]` section; each kind imports only what it needs."""
    spec_dir = Path(spec_dir)
    if isinstance(spec, Digits):
        from .digits import build_digits

        return build_digits(spec, seeds)
    if isinstance(spec, TextChars):
        from .text import build_text

        return build_text(spec, seeds, spec_dir)
    if isinstance(spec, Synthetic):
        from .synthetic import build_synthetic

        return build_synthetic(spec, seeds)
    if isinstance(spec, Npz):
        from .npz import build_npz

        return build_npz(spec, seeds, spec_dir)
    if isinstance(spec, CustomData):
        from .custom import build_custom

        return build_custom(spec, seeds, spec_dir, allow_imports)
    raise TypeError(f"unknown data section {type(spec).__name__}")
