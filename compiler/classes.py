"""Which resolved fields are trajectory and which operational."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from expspec.spec import FieldClass, field_class

__all__ = ["field_classes", "trajectory_view"]


def _walk(model: BaseModel, prefix: str, out: dict[str, FieldClass]) -> None:
    for name, info in type(model).model_fields.items():
        key = f"{prefix}{info.alias or name}"
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _walk(value, f"{key}.", out)
        else:
            out[key] = field_class(info)


def field_classes(model: BaseModel) -> dict[str, FieldClass]:
    """Dotted path of every leaf field of `model` -> its class."""
    out: dict[str, FieldClass] = {}
    _walk(model, "", out)
    return out


def trajectory_view(dump: dict[str, Any], classes: dict[str, FieldClass]) -> dict[str, Any]:
    """The part of a spec dump that changes the math: trajectory leaves only."""
    view: dict[str, Any] = {}
    for path, cls in classes.items():
        if cls != "trajectory":
            continue
        keys = path.split(".")
        value: Any = dump
        for key in keys:
            value = value[key]
        table = view
        for key in keys[:-1]:
            table = table.setdefault(key, {})
        table[keys[-1]] = value
    return view
