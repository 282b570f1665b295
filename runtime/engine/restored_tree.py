"""A restored checkpoint tree fitted onto the model's own tree, or a clear refusal.

Orbax gives lists back as dicts keyed "0", "1", ... and knows nothing of the
model a tree is meant for, so every reader of parameters (LoRA base weights,
export, sampling) fits what it restored onto the model's template: the same
keys, the same shapes, the model's dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_restored"]


def fit_restored(template: Any, restored: Any, error: type[Exception], source: str, where: str = "") -> Any:
    """`restored` in `template`'s layout and dtypes; `error(one line)` naming `source` and the
    path when a table, key or shape differs, or `restored` holds a key the model lacks."""
    if isinstance(template, dict):
        if not isinstance(restored, dict):
            raise error(f"{source} has no table at '{where}'; was it saved from this model?")
        extra = set(map(str, restored)) - set(map(str, template))
        if extra:
            raise error(f"{source} holds '{where}{sorted(extra)[0]}', which this model lacks")
        out = {}
        for key, value in template.items():
            item = restored.get(key, restored.get(str(key)))
            if item is None:
                raise error(f"{source} lacks '{where}{key}'; was it saved from this model?")
            out[key] = fit_restored(value, item, error, source, f"{where}{key}/")
        return out
    array = np.asarray(restored)
    if array.shape != template.shape:
        raise error(f"{source} '{where[:-1]}' has shape {array.shape}, the model needs {template.shape}")
    return array.astype(template.dtype)
