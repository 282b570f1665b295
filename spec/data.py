"""The `[data]` section: where batches come from."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .fields import SpecModel, trajectory
from .rules import rule_error
from .types import Args, NonEmptyStr, Target

__all__ = ["CustomData", "DataSpec", "Digits", "Npz", "Synthetic", "TextChars"]

TestFraction = Annotated[float, Field(gt=0, lt=1)]


class _Data(SpecModel):
    batch_size: int = trajectory(64, gt=0, le=1 << 20)
    """Examples per optimizer step (split into `train.grad_accum` micro-batches)."""


class Digits(_Data):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""

    kind: Literal["sklearn_digits"] = trajectory()
    """Data source."""
    test_fraction: TestFraction = trajectory(0.2)
    """Share of examples held out for evaluation (split drawn from the `data.split` stream)."""


class TextChars(_Data):
    """Character-level language modelling on a text: windows of `seq_len` bytes."""

    kind: Literal["text_chars"] = trajectory()
    """Data source."""
    path: NonEmptyStr = trajectory(path=True)
    """A UTF-8 text file; relative paths resolve against the spec file's folder.
    Its bytes are fingerprinted as the run's `data` input (there are no built-in
    texts: one read from the installed Python would differ between patch releases)."""
    seq_len: int = trajectory(128, gt=0, le=1 << 20)
    """Tokens per training window."""
    test_fraction: TestFraction = trajectory(0.1)
    """Share of the text (its tail) held out for evaluation."""


class Synthetic(_Data):
    """Data generated from the `data.split` stream: no files, no downloads."""

    kind: Literal["synthetic"] = trajectory()
    """Data source."""
    task: Literal["classification", "regression"] = trajectory("classification")
    """Whether targets are class labels or real values."""
    samples: int = trajectory(2048, gt=1, le=1 << 26)
    """Number of examples generated."""
    features: int = trajectory(16, gt=0, le=1 << 16)
    """Input dimension."""
    classes: int = trajectory(4, gt=1, le=1 << 16)
    """Number of classes (classification only)."""
    noise: float = trajectory(0.1, ge=0, le=1e3)
    """Standard deviation of the noise added to targets or logits."""
    test_fraction: TestFraction = trajectory(0.2)
    """Share of examples held out for evaluation."""


class Npz(_Data):
    """Arrays from a NumPy `.npz` file (read without pickle)."""

    kind: Literal["npz"] = trajectory()
    """Data source."""
    path: NonEmptyStr = trajectory(path=True)
    """The `.npz` file; relative paths resolve against the spec file's folder."""
    inputs: NonEmptyStr = trajectory("x")
    """Name of the input array inside the file."""
    targets: NonEmptyStr = trajectory("y")
    """Name of the target array inside the file."""
    test_fraction: TestFraction = trajectory(0.2)
    """Share of examples held out for evaluation."""

    @model_validator(mode="after")
    def _distinct_arrays(self) -> Npz:
        if self.inputs == self.targets:
            raise rule_error("targets", "must differ from data.inputs", got=self.targets)
        return self


class CustomData(_Data):
    """Batches from your own factory `(seed, **args)` returning an object with
    `train_batch(step)` and `eval_batches()`."""

    kind: Literal["custom"] = trajectory()
    """Data source."""
    target: Target = trajectory()
    """Factory to call, written `package.module:function`; imported only when allowed."""
    args: Args = trajectory({})
    """Keyword arguments passed to the factory."""


DataSpec = Annotated[Digits | TextChars | Synthetic | Npz | CustomData, Field(discriminator="kind")]
