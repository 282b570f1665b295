"""Byte sizes as people write them: `536870912`, `"512MiB"`, `"8GiB"`, `"2GB"`.

The spec keeps the value as written (the plan shows what the user typed next to
the resolved bytes); `parse_bytes` is the one reading of it, shared by the spec's
validation and the compiler's resolution so the two can never disagree.
Parsing is strict: a unit is required in a string, its case is fixed (`Mb` could
mean bits), and a size must come out as a whole, positive number of bytes.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

__all__ = ["MAX_BYTES", "ByteSize", "parse_bytes"]

UNITS = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}

MAX_BYTES = 2**60
"""One EiB: far above any device or host, and well inside a TOML (64-bit) integer."""

_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,6})? ?(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
_SIZE = re.compile(_PATTERN)
_HINT = 'bytes as a positive integer, or a string with a unit such as "512MiB", "8GiB" or "2GB"'


def parse_bytes(value: Any) -> int:
    """The number of bytes `value` (an int, or a string with a unit) stands for.

    Raises `ValueError` with a message fit for a one-line spec error.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be {_HINT}")
    if isinstance(value, int):
        count = Decimal(value)
    else:
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"must be {_HINT}")
        count = Decimal(value[: match.start(2)].rstrip()) * UNITS[match.group(2)]
    if count <= 0:
        raise ValueError("must be more than 0 bytes")
    if count != count.to_integral_value():
        raise ValueError("is not a whole number of bytes")
    if count > MAX_BYTES:
        raise ValueError(f"must be at most {MAX_BYTES} bytes (1 EiB)")
    return int(count)


def _check(value: Any) -> Any:
    # One error for every bad value, instead of one per member of the union below.
    try:
        parse_bytes(value)
    except ValueError as err:
        raise PydanticCustomError("byte_size", str(err)) from None
    return value


ByteSize = Annotated[
    Annotated[int, Field(gt=0, le=MAX_BYTES)] | Annotated[str, StringConstraints(pattern=_PATTERN)],
    BeforeValidator(_check),
]
"""A size in bytes, validated by `parse_bytes`; the schema shows both spellings."""
