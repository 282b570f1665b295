"""Generated data: a known, learnable problem with no files and no downloads."""

from __future__ import annotations

import numpy as np

from expspec.compiler import digest
from expspec.runtime.data.base import ArraySource, DataContext
from expspec.runtime.types import DataInfo
from expspec.spec.data import Synthetic

__all__ = ["build_synthetic"]

GENERATOR = "expspec.synthetic.v1"
"""Names the generation recipe in the fingerprint: a changed recipe is changed data."""


def build_synthetic(spec: Synthetic, ctx: DataContext) -> ArraySource:
    """Inputs ~ N(0, 1); targets from a random linear map plus noise.

    Generation draws from (seed, 1) rather than the bare seed, which the split
    uses, so which rows are held out is independent of their values.
    """
    seed = ctx.seeds["data.split"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    n, d = spec.samples, spec.features
    x = rng.standard_normal((n, d))
    if spec.task == "classification":
        weights = rng.standard_normal((d, spec.classes))
        logits = x @ weights + spec.noise * rng.standard_normal((n, spec.classes))
        y = np.argmax(logits, axis=1).astype(np.int32)
        info = DataInfo(task="classification", input_dim=d, num_classes=spec.classes)
    else:
        weights = rng.standard_normal(d)
        y = (x @ weights + spec.noise * rng.standard_normal(n)).astype(np.float32)
        info = DataInfo(task="regression", input_dim=d)
    fingerprint = digest(
        {
            "generator": GENERATOR,
            "kind": spec.kind,
            "task": spec.task,
            "samples": n,
            "features": d,
            # Regression ignores `classes`; leaving it out keeps the fingerprint
            # unchanged when only an unused field changes.
            "classes": spec.classes if spec.task == "classification" else None,
            "noise": spec.noise,
            "seed": seed,
        }
    )
    return ArraySource(
        x.astype(np.float32),
        y,
        info,
        fingerprint,
        batch_size=spec.batch_size,
        test_fraction=spec.test_fraction,
        seeds=ctx.seeds,
    )
