"""Hostile values and key names for the spec fuzzer.

Part of the spec-mutation fuzzer (`fuzz_specs.py`): the pools a mutation draws
from when it replaces a value, invents a key or misspells one (control
characters, console markup, path-like strings, odd Unicode, huge or non-finite
numbers, wrong kinds).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

from tests.reliability.fuzz_toml import Raw

# ---------------------------------------------------------------------------
# Hostile values and names (the `custom` targets are in fuzz_workspace).

CONTROL = [
    "\x00",
    "a\x00b",
    "\x1b[2J\x1b[H",
    "\x1b]0;pwned\x07",
    "\x1b[31mred\x1b[0m",
    "line\nbreak",
    "cr\rreturn",
    "\t",
    "\x7f",
    "\u202eevil",
    "\u2028",
    "\ufeff",
    "\x08\x08\x08",
]
MARKUP = [":smile:", ":thumbs_up:", "[bold red]x[/]", "[link=https://example.invalid]y[/link]", "[/]", "%s%n{0}{x}"]
PATHLIKE = ["../../etc/passwd", "/dev/zero", "/", "~", "C:\\x", "file:///etc/passwd", ".", "..", "NUL", "con"]
UNICODE = ["модель", "🙂", "名前", "e\u0301", "ﬁ", "\U0001f4a9" * 3, "Ａ", "ı", "ß"]
WORDS = ["mlp", "64", "true", "1e-3", "null", "None", "adam", "custom", "kind", "__class__"]

VALID_KINDS = [
    "mlp",
    "transformer",
    "custom",
    "sklearn_digits",
    "text_chars",
    "synthetic",
    "npz",
    "sgd",
    "momentum",
    "adam",
    "adamw",
    "lion",
    "constant",
    "cosine",
    "linear",
]
BAD_KINDS: list[Any] = ["", "MLP", " mlp", "mlp ", "mlp\x00", "cnn", "__class__", "kind", "../mlp", "x" * 5000]
BAD_KINDS += [0, 1.5, True, [], ["mlp"], {}, {"kind": "mlp"}, dt.date(2020, 1, 1)]

NAME_POOL = [
    "",
    " ",
    "a.b",
    "a..b",
    '"',
    'quo"te',
    "it's",
    "\\",
    "=",
    "#",
    "[x]",
    "__init__",
    "__class__",
    "model_config",
    "model_fields",
    "extends",
    "kind",
    "async_",
    "x" * 300,
    *CONTROL,
    *MARKUP,
    *UNICODE,
]


def junk(rng: random.Random) -> Any:
    """A value of a random hostile sort."""
    sort = rng.randrange(14)
    if sort == 0:
        return rng.choice(WORDS)
    if sort == 1:
        return rng.choice([True, False])
    if sort == 2:
        return rng.choice([[], [1, "a"], [[1]], [True], [{"a": 1}], [1.5, True], list(range(50))])
    if sort == 3:
        return rng.choice([{}, {"kind": "mlp"}, {"x": 1}, {"": {"": 1}}])
    if sort == 4:
        return rng.choice([2**70, -(2**70), 2**63, -(2**63) - 1, 2**64, 10**100, 2**31, -1, 0, 1])
    if sort == 5:
        return rng.choice([1e308, -1e308, 5e-324, 1.7976931348623157e308, -0.0, 0.0, 0.5, 1e-320])
    if sort == 6:
        return rng.choice([math.nan, math.inf, -math.inf, Raw("1e400"), Raw("-nan"), Raw("+inf")])
    if sort == 7:
        return ""
    if sort == 8:
        return rng.choice(CONTROL) + rng.choice(["", "x", "mlp"])
    if sort == 9:
        return rng.choice(["x", "é", "\x1b", "🙂"]) * rng.choice([129, 4097, 10_001, 100_000])
    if sort == 10:
        return rng.choice(
            [
                dt.datetime(1979, 5, 27, 7, 32, tzinfo=dt.UTC),
                dt.datetime(1979, 5, 27, 7, 32),
                dt.date(1979, 5, 27),
                dt.time(7, 32),
            ]
        )
    if sort == 11:
        return rng.choice(PATHLIKE)
    if sort == 12:
        return rng.choice(MARKUP + UNICODE)
    # Integers too long for Python's int<->str limit (4300 digits) and beyond.
    return Raw(rng.choice(["1", "-9", "0x"]) + "9" * rng.choice([20, 400, 4301, 5000]))


def near_miss(rng: random.Random, key: str) -> str:
    """A key one slip of the finger away from `key`."""
    if not key:
        return "x"
    i = rng.randrange(len(key))
    options = [
        key[:i] + key[i + 1 :],  # drop
        key[:i] + key[i] + key[i:],  # double
        key[:i] + key[i + 1 : i + 2] + key[i] + key[i + 2 :],  # swap
        key.upper(),
        key.capitalize(),
        key.replace("_", "-") if "_" in key else key + "_",
        key + "s",
        key + " ",
        " " + key,
        key.replace("a", "\u0430", 1) if "a" in key else key + "\u200b",  # Cyrillic a / zero-width space
        key + "." + key,
    ]
    out = rng.choice(options)
    return out if out != key else key + "x"


def random_name(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(NAME_POOL)
    alphabet = "abc_-.\"' \t\\=[]#é🙂\x00\x1b:"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
