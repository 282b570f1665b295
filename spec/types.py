"""Constrained value types shared by the spec sections."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, Strict, StringConstraints

__all__ = [
    "Args",
    "Fraction",
    "Name",
    "NonEmptyStr",
    "PathList",
    "PositiveInt",
    "PositiveIntTuple",
    "Rate",
    "StrTuple",
    "Target",
    "UInt31",
]

# TOML arrays arrive as lists; tuples keep the frozen models immutable. The
# outer `Strict(False)` accepts a list, the items stay strict.
PositiveIntTuple = Annotated[tuple[Annotated[int, Field(gt=0)], ...], Strict(False)]
StrTuple = Annotated[tuple[Annotated[str, StringConstraints(min_length=1)], ...], Strict(False)]

PositiveInt = Annotated[int, Field(gt=0)]
UInt31 = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""A seed value JAX accepts on every backend without 64-bit mode."""

Rate = Annotated[float, Field(gt=0, le=1e3)]
Fraction = Annotated[float, Field(ge=0, lt=1)]

NonEmptyStr = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
PathList = Annotated[
    tuple[NonEmptyStr, ...],
    Strict(False),
    BeforeValidator(
        lambda value: (value,) if isinstance(value, str) else value, json_schema_input_type=str | list[str]
    ),
    Field(min_length=1),
]
"""One path or glob, or a list of them (TOML's `"a"` and `["a", "b"]` both work)."""

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
]
"""A run name; it becomes a folder name, so no separators or leading dots."""

Target = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
    ),
]
"""An importable object written `package.module:attribute`."""


def _finite(value: Any) -> Any:
    """NaN and infinities would all serialise as null and share one fingerprint."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("must not contain NaN or infinity")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


Args = Annotated[dict[str, Any], Strict(False), AfterValidator(_finite)]
"""Keyword arguments handed to a custom factory: any TOML table of finite values."""
