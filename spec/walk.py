"""Walking the spec's model classes: every field of every section and variant."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["field_key", "iter_fields", "model_variants", "section_at"]


def field_key(name: str, info: FieldInfo) -> str:
    """The key a field has in TOML (its alias when it has one, e.g. `async`)."""
    return info.alias or name


def model_variants(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation admits (through Optional, unions, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return model_variants(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in model_variants(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def iter_fields(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo, type[BaseModel]]]:
    """Yield (key path, field, owning class) for every field, across union variants."""
    for name, info in model.model_fields.items():
        path = (*prefix, field_key(name, info))
        yield path, info, model
        for variant in model_variants(info.annotation):
            yield from iter_fields(variant, path)


def _kind_literal(model: type[BaseModel]) -> Any:
    info = model.model_fields.get("kind")
    if info is None:
        return None
    args = typing.get_args(info.annotation)
    return args[0] if args else None


def section_at(root: type[BaseModel], path: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The model class that validates the table at `path` of raw `data`, if any.

    Discriminated unions are resolved with the table's own `kind`.
    """
    model: type[BaseModel] | None = root
    for key in path:
        if model is None or not isinstance(data, dict):
            return None
        fields = {field_key(n, i): i for n, i in model.model_fields.items()}
        if key not in fields:
            return None
        data = data.get(key)
        variants = model_variants(fields[key].annotation)
        if len(variants) > 1:
            kind = data.get("kind") if isinstance(data, dict) else None
            variants = [v for v in variants if _kind_literal(v) == kind]
        model = variants[0] if len(variants) == 1 else None
    return model
