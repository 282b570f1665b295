"""Types shared by the runtime's components."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["Batch", "DataInfo", "PyTree", "Task"]

PyTree = Any
Batch = dict[str, np.ndarray]
"""`x` inputs and `y` targets (and, in eval batches, `weight`: 1.0 for real
examples, 0.0 for padding), as host NumPy arrays."""

Task = Literal["classification", "regression", "lm"]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to be built."""

    task: Task
    input_dim: int | None = None
    """Features per example (classification and regression)."""
    num_classes: int | None = None
    """Number of classes (classification)."""
    vocab_size: int | None = None
    """Token vocabulary size (language modelling)."""
    seq_len: int | None = None
    """Tokens per window (language modelling)."""
    train_size: int = 0
    """Examples (or windows) in the training split."""
    eval_size: int = 0
    """Examples (or windows) in the held-out split."""
