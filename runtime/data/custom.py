"""Your own data factory, imported only with the caller's allowance.

The wrapper gives any object with `train_batch` and `eval_batches` the rest of
the `DataSource` contract (`info`, `fingerprint`, eval weights, dtypes) so the
training loop never special-cases it.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from expspec.compiler import digest
from expspec.runtime.data.base import DataContext, DataError
from expspec.runtime.types import Batch, DataInfo
from expspec.spec.data import CustomData
from expspec.spec.targets import TargetNotFound, import_target, target_source

__all__ = ["CustomSource", "build_custom"]

_DTYPES = {
    "classification": (np.float32, np.int32),
    "regression": (np.float32, np.float32),
    "lm": (np.int32, np.int32),
}


def _size(obj: Any, name: str) -> int:
    value = getattr(obj, name, 0)
    return int(value) if isinstance(value, int | np.integer) else 0


def _require_int(obj: Any, name: str, why: str, target: str) -> int:
    value = getattr(obj, name, None)
    if not isinstance(value, int | np.integer) or value < 1:
        raise DataError(f"data.target '{target}': {why}, so its object needs a positive integer `{name}`")
    return int(value)


def infer_info(obj: Any, batch: Batch, target: str) -> DataInfo:
    """What the model needs, read from a first batch when the object does not say."""
    x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
    sizes = {"train_size": _size(obj, "train_size"), "eval_size": _size(obj, "eval_size")}
    integer_y = y.dtype.kind in "biu"
    if integer_y and x.dtype.kind in "biu" and x.ndim == 2 and y.shape == x.shape:
        vocab = _require_int(obj, "vocab_size", "its batches look like token windows", target)
        return DataInfo(task="lm", vocab_size=vocab, seq_len=x.shape[1], **sizes)
    input_dim = int(np.prod(x.shape[1:], dtype=np.int64)) if x.ndim > 1 else 1
    if integer_y:
        classes = _require_int(obj, "num_classes", "its targets are integers (classification)", target)
        return DataInfo(task="classification", input_dim=input_dim, num_classes=classes, **sizes)
    if y.dtype.kind == "f":
        return DataInfo(task="regression", input_dim=input_dim, **sizes)
    raise DataError(f"data.target '{target}': targets of dtype {y.dtype} are neither integers nor floats")


class CustomSource:
    """Delegates batches to the user's object, casting them to the task's dtypes."""

    def __init__(self, obj: Any, info: DataInfo, fingerprint: str) -> None:
        self.obj, self.info, self.fingerprint = obj, info, fingerprint
        self._x_dtype, self._y_dtype = _DTYPES[info.task]

    def _cast(self, batch: Batch) -> Batch:
        out = dict(batch)
        out["x"] = np.asarray(batch["x"], dtype=self._x_dtype)
        out["y"] = np.asarray(batch["y"], dtype=self._y_dtype)
        return out

    def train_batch(self, step: int) -> Batch:
        return self._cast(self.obj.train_batch(step))

    def eval_batches(self) -> list[Batch]:
        batches = []
        for batch in self.obj.eval_batches():
            out = self._cast(batch)
            weight = batch.get("weight")
            out["weight"] = np.ones(len(out["y"]), np.float32) if weight is None else np.asarray(weight, np.float32)
            batches.append(out)
        return batches


def _fingerprint(obj: Any, spec: CustomData, spec_dir: Path) -> str:
    """The object's own fingerprint when it knows its data; else its code and arguments."""
    own = getattr(obj, "fingerprint", None)
    if own is not None:
        return str(own)
    try:
        source = target_source(spec.target, [spec_dir]).read_bytes()
    except (TargetNotFound, OSError) as err:
        raise DataError(f"data.target '{spec.target}': cannot read its source to fingerprint it: {err}") from None
    args = spec.model_dump(mode="json")["args"]
    described = digest({"target": spec.target, "args": args})
    return hashlib.sha256(source + b"\x00" + described.encode()).hexdigest()


def _takes(factory: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def build_custom(spec: CustomData, ctx: DataContext) -> CustomSource:
    """Import refusal (`ImportNotAllowed`) propagates unchanged: the CLI explains it."""
    try:
        factory = import_target(spec.target, ctx.allow_imports, [ctx.spec_dir])
    except TargetNotFound as err:
        raise DataError(f"data.target: {err}") from None
    kwargs = dict(spec.args)
    if _takes(factory, "batch_size") and "batch_size" not in kwargs:
        kwargs["batch_size"] = spec.batch_size  # the spec's batch size, for factories that want it
    obj = factory(ctx.seeds["custom.data"], **kwargs)
    missing = [name for name in ("train_batch", "eval_batches") if not callable(getattr(obj, name, None))]
    if missing:
        raise DataError(f"data.target '{spec.target}' returned an object without {' and '.join(missing)}()")
    info = getattr(obj, "info", None)
    if info is None:
        info = infer_info(obj, obj.train_batch(0), spec.target)
    elif not isinstance(info, DataInfo):
        raise DataError(
            f"data.target '{spec.target}': `info` must be an expspec.runtime.types.DataInfo, got {type(info).__name__}"
        )
    return CustomSource(obj, info, _fingerprint(obj, spec, ctx.spec_dir))
