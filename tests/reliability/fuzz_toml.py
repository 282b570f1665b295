"""TOML text for the spec fuzzer: writing any value as TOML, and walking parsed specs.

Part of the spec-mutation fuzzer (`fuzz_specs.py`). Mutations edit a spec as
parsed data and write it back, so they need a TOML writer that can hold every
value TOML can (and raw text for what Python cannot build cheaply), plus ways to
reach every table and leaf of a parsed spec.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from typing import Any

from tests.helpers import toml_string

# ---------------------------------------------------------------------------
# TOML writing: every value TOML can hold, plus raw text for what Python
# cannot build cheaply (10**5000 digits, 2000 levels of brackets).


class Raw(str):
    """TOML text written as is."""


def _key(key: str) -> str:
    bare = key and key.isascii() and all(c.isalnum() or c in "_-" for c in key)
    return key if bare else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def dumps(data: dict[str, Any]) -> str:
    """A TOML document: top-level values first, then one `[table]` per top-level table."""
    lines = [f"{_key(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"\n[{_key(key)}]")
            lines.extend(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Walking parsed specs.


def tables(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    yield prefix, data
    for key, value in list(data.items()):
        if isinstance(value, dict):
            yield from tables(value, (*prefix, key))


def leaves(container: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, Any, tuple[Any, ...]]]:
    """(container, key, path) of every value that is not a table, array items included."""
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in list(items):
        if isinstance(value, dict):
            yield from leaves(value, (*prefix, key))
        else:
            yield container, key, (*prefix, key)
            if isinstance(value, list):
                yield from leaves(value, (*prefix, key))


def nested(rng: random.Random, depth: int) -> Raw:
    """Arrays, inline tables or both, `depth` levels deep."""
    shape = rng.randrange(3)
    if shape == 0:
        return Raw("[" * depth + "1" + "]" * depth)
    if shape == 1:
        return Raw("{a = " * depth + "1" + "}" * depth)
    half = depth // 2
    return Raw("[{a = " * half + "1" + "}]" * half)
