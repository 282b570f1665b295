"""TOML text for the spec fuzzer: writing any value as TOML, and walking parsed specs.

Part of the spec-mutation fuzzer (`fuzz_specs.py`). Mutations edit a spec as
parsed data and write it back, so they need a TOML writer that can hold every
value TOML can (and raw text for what Python cannot build cheaply), plus ways to
reach every table and leaf of a parsed spec.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from tests.helpers import Raw, toml_value
from tests.helpers import to_toml as dumps

__all__ = ["Raw", "dumps", "leaves", "nested", "tables", "toml_value"]

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
