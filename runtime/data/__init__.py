"""Data sources: host NumPy batches addressed by step, fingerprinted by content.

NumPy only (no JAX) so building data never touches an accelerator. Sources are
built through `DATA_BUILDERS`, keyed by `data.kind` like the models' registry;
each kind's module (and what it imports) loads only when that kind is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from expspec.runtime.data.base import DataContext, DataError, DataSource, close_source
from expspec.runtime.registry import Registry
from expspec.spec.data import DataSpec

__all__ = ["DATA_BUILDERS", "DataContext", "DataError", "DataSource", "build_data", "close_source"]

DATA_BUILDERS: Registry[Callable[..., DataSource]] = Registry(
    "data.kind",
    DataError,
    {
        "sklearn_digits": "expspec.runtime.data.digits:build_digits",
        "text_chars": "expspec.runtime.data.text:build_text",
        "text": "expspec.runtime.data.text_source:build_text_source",
        "synthetic": "expspec.runtime.data.synthetic:build_synthetic",
        "npz": "expspec.runtime.data.npz:build_npz",
        "custom": "expspec.runtime.data.custom:build_custom",
    },
)
"""`data.kind` -> `builder(spec, ctx: DataContext) -> DataSource`."""


def build_data(
    spec: DataSpec,
    seeds: Mapping[str, int],
    spec_dir: Path,
    allow_imports: Sequence[str] = (),
    *,
    rehash: bool = False,
) -> DataSource:
    """The source for a validated `[data]` section; `rehash` re-reads data files for their fingerprint."""
    builder = DATA_BUILDERS[spec.kind]
    ctx = DataContext(seeds=seeds, spec_dir=Path(spec_dir), allow_imports=tuple(allow_imports), rehash=rehash)
    return builder(spec, ctx)
