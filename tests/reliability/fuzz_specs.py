"""Mutation fuzzing of spec files: a hostile spec is accepted or refused, never more.

    python -m tests.reliability.fuzz_specs --count 2000 --seed 0

A spec is the one input of `exp` that may come from someone else (a shared
repository, a pull request, a downloaded experiment), so the loader is a trust
boundary. Whatever bytes a spec holds, `exp validate`, `exp plan` and `exp run`
must either accept it or exit 2 with one readable line per problem; they must
never show a Python traceback, never write anything (no `runs/`, nothing beside
the spec, nothing in the working directory) and never run the code of a
`custom` target without `--allow-import`.

Each trial copies the folder of one example spec into a fresh temporary
directory (so relative `extends` still resolve), mutates the spec, and runs the
real command line code in-process (`CliRunner().invoke(exp.cli.app, ...)`)
with the working directory set to an empty folder. A trial's random choices
depend only on `--seed` and its index, so `--trial N` replays one. The last
line printed is

    mutated specs tried: N, accepted: A, rejected with exit 2: R, tracebacks: T, files created: F

and the exit status is non-zero when T or F is, or when any other promise
broke (an exit code other than 0/2, an error line in the wrong shape, a
refusal that does not name what it should).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from exp.cli import app
from tests.helpers import MINIMAL, toml_string

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SPECS: tuple[Path, ...] = tuple(sorted(EXAMPLES.rglob("*.toml")))
"""Every example spec, including `custom/sines.toml` and the files that use `extends`."""

EVIL_MODULE = "exp_fuzz_evil"
EVIL_PACKAGE = "exp_fuzz_evilpkg"
MARKER = "IMPORTED-"
"""Prefix of the file a planted module writes when it is imported (it never may be)."""

KINDS = (
    "leaf",
    "delete",
    "unknown_key",
    "rename",
    "kind",
    "nesting",
    "extends",
    "bytes",
    "custom",
    "override",
    "mixed",
)

SUMMARY = "mutated specs tried: {n}, accepted: {a}, rejected with exit 2: {r}, tracebacks: {t}, files created: {f}"

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
# Hostile values, names and targets.

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


# ---------------------------------------------------------------------------
# Cases.


@dataclass
class Case:
    """One mutated spec and what to run it with."""

    kind: str
    note: str
    text: bytes
    """The mutated spec file."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Extra files, relative to the spec's folder."""
    links: dict[str, str] = field(default_factory=dict)
    """Symbolic links to make in the spec's folder: name -> target."""
    overrides: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    """`--allow-import` prefixes that must *not* cover any planted module."""
    expect: str | None = None
    """`"accept"`, `"same"` (same output as the unmutated spec) or a text some problem line must hold."""
    spec: Path | None = None
    """The example it was made from."""


@dataclass
class Workspace:
    """A temporary copy of one example's folder, an empty working directory and planted files."""

    root: Path
    folder: Path
    main: Path
    cwd: Path

    @property
    def outside(self) -> Path:
        return self.root / "outside.toml"


@contextlib.contextmanager
def workspace(spec: Path) -> Iterator[Workspace]:
    root = Path(tempfile.mkdtemp(prefix="exp-fuzz-"))
    try:
        folder = root / "spec"
        shutil.copytree(spec.parent, folder, ignore=shutil.ignore_patterns("ci", "__pycache__", "*.pyc"))
        cwd = root / "cwd"
        cwd.mkdir()
        ws = Workspace(root=root, folder=folder, main=folder / spec.name, cwd=cwd)
        # A complete spec outside the folder: an `extends` that escaped would load it.
        ws.outside.write_text(MINIMAL.replace('name = "t"', 'name = "outside"'), encoding="utf-8")
        plant_modules(ws)
        yield ws
    finally:
        shutil.rmtree(root, ignore_errors=True)


def evil_source(ws: Workspace, name: str) -> str:
    marker = ws.root / f"{MARKER}{name}"
    return (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "print('IMPORTED " + name + "')\n\n\n"
        "def make(*args, **kwargs):\n"
        "    raise SystemExit('a custom factory was called')\n"
    )


def plant_modules(ws: Workspace) -> None:
    """Modules that leave a marker file when imported: locating them is fine, running them is not."""
    (ws.folder / f"{EVIL_MODULE}.py").write_text(evil_source(ws, EVIL_MODULE))
    pkg = ws.folder / EVIL_PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text(evil_source(ws, EVIL_PACKAGE))
    (pkg / "sub.py").write_text(evil_source(ws, EVIL_PACKAGE + ".sub"))
    (ws.folder / "exp_fuzz_nsdir").mkdir()  # a namespace package: no source file
    (ws.folder / "exp_fuzz_weird" / "__init__.py").mkdir(parents=True)  # a folder where a file should be
    lab = ws.folder / "lab"
    if lab.is_dir():  # examples/custom: the real targets must not run either
        for module in lab.glob("*.py"):
            name = "lab." + module.stem
            module.write_text(evil_source(ws, name).split("\n\n\n")[0] + "\n" + module.read_text())


TARGETS = [
    f"{EVIL_MODULE}:make",
    f"{EVIL_PACKAGE}:make",
    f"{EVIL_PACKAGE}.sub:make",
    f"{EVIL_PACKAGE}.sub.deeper:make",
    f"{EVIL_PACKAGE}.missing:make",
    f"{EVIL_MODULE}.sub:make",
    f"{EVIL_MODULE}:make.__globals__",
    "exp_fuzz_nsdir:make",
    "exp_fuzz_weird:make",
    "exp_fuzz_nonexistent:make",
    "lab.models:make_regressor",
    "lab.data:make_sines",
    "lab:make",
    "os:system",
    "subprocess:run",
    "builtins:eval",
    "this:x",
    "__main__:x",
    # malformed
    EVIL_MODULE,
    f"{EVIL_MODULE}:",
    ":make",
    f"../{EVIL_MODULE}:make",
    f"{EVIL_MODULE}.py:make",
    f"{EVIL_MODULE}:make()",
    f"{EVIL_MODULE}:make;import os",
    f"/{EVIL_MODULE}:make",
    "a b:c",
    "",
    f"{EVIL_MODULE}:make\n",
    f"{EVIL_MODULE}\x00:make",
]


def _custom_table(rng: random.Random, section: str, target: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"kind": "custom", "target": target}
    if rng.random() < 0.7:
        table["args"] = rng.choice([{}, {"width": 8}, {"a": junk(rng)}, junk(rng)])
    if section == "data" and rng.random() < 0.5:
        table["batch_size"] = rng.choice([8, 64, junk(rng)])
    return table


# ---------------------------------------------------------------------------
# Mutations. Each takes the example's parsed data (a fresh copy) and returns a Case.


def _pick_table(rng: random.Random, data: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    return rng.choice(list(tables(data)))


def m_leaf(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    notes = []
    for _ in range(rng.randint(1, 3)):
        found = list(leaves(data))
        if not found or rng.random() < 0.15:
            path, table = _pick_table(rng, data)
            if not path:
                continue
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            value = junk(rng)
            parent[path[-1]] = value
            notes.append(f"{'.'.join(path)} = {toml_value(value)[:80]}")
            continue
        container, key, path = rng.choice(found)
        value = junk(rng)
        container[key] = value
        notes.append(f"{'.'.join(map(str, path))} = {toml_value(value)[:80]}")
    return Case("leaf", "; ".join(notes), dumps(data).encode())


def m_delete(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    notes = []
    for _ in range(rng.randint(1, 3)):
        path, table = _pick_table(rng, data)
        if table:
            key = rng.choice(list(table))
            del table[key]
            notes.append("del " + ".".join((*path, key)))
    return Case("delete", "; ".join(notes), dumps(data).encode())


def m_unknown_key(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    path, table = _pick_table(rng, data)
    name = random_name(rng)
    table[name] = rng.choice([1, "x", junk(rng)])
    return Case("unknown_key", f"add {path}.{name!r}", dumps(data).encode())


def m_rename(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    path, table = _pick_table(rng, data)
    if not table:
        return m_unknown_key(rng, data, ws)
    key = rng.choice(list(table))
    new = near_miss(rng, key)
    table[new] = table.pop(key)
    return Case("rename", f"rename {'.'.join((*path, key))} -> {new!r}", dumps(data).encode())


def m_kind(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    candidates = [(p, t) for p, t in tables(data) if "kind" in t]
    path, table = rng.choice(candidates) if candidates and rng.random() < 0.8 else _pick_table(rng, data)
    value = rng.choice(VALID_KINDS) if rng.random() < 0.6 else rng.choice(BAD_KINDS)
    table["kind"] = value
    return Case("kind", f"{'.'.join((*path, 'kind'))} = {toml_value(value)[:60]}", dumps(data).encode())


def m_nesting(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    depth = rng.randint(10, 200)
    shape = rng.randrange(4)
    if shape == 0:
        found = list(leaves(data))
        if found:
            container, key, path = rng.choice(found)
            container[key] = nested(rng, depth)
            return Case("nesting", f"{'.'.join(map(str, path))} = <{depth} levels>", dumps(data).encode())
    if shape == 1:
        path, table = _pick_table(rng, data)
        table[random_name(rng) if rng.random() < 0.3 else "deep"] = nested(rng, depth)
        return Case("nesting", f"{path}: new key <{depth} levels>", dumps(data).encode())
    section = rng.choice(["model", "data", "seeds", "x"])
    keys = ".".join([section] + ["a"] * depth)
    if shape == 2:
        extra = f"\n[{keys}]\nk = 1\n"
        note = f"[{section}.a.a...] header, {depth} levels"
    else:
        extra = f"\n{keys} = 1\n"
        note = f"dotted key {depth} levels"
    return Case("nesting", note, (dumps(data) + extra).encode())


def m_extends(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    name = ws.main.name
    up = os.path.relpath(ws.outside, ws.folder)
    sort = rng.randrange(9)
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    if sort == 0:  # itself
        value = rng.choice([name, f"./{name}", f"sub/../{name}", f"./././{name}"])
        data["extends"], expect = value, "extends: "
    elif sort == 1:  # a -> b -> a, a -> b -> c -> a, or through a subfolder
        chain = rng.choice([["b_fuzz.toml"], ["b_fuzz.toml", "c_fuzz.toml"], ["sub/b_fuzz.toml"]])
        data["extends"] = chain[0]
        for here, there in zip(chain, [*chain[1:], name]):
            back = os.path.relpath(ws.folder / there, (ws.folder / here).parent)
            files[here] = f'extends = "{back}"\nname = "x"\n'.encode()
        expect = "extends: cycle"
    elif sort == 2:  # longer than the loader follows
        n = rng.randint(17, 40)
        data["extends"] = "chain_0.toml"
        for i in range(n):
            files[f"chain_{i}.toml"] = f'extends = "chain_{i + 1}.toml"\n'.encode()
        files[f"chain_{n}.toml"] = b'name = "end"\n'
        expect = "extends: "
    elif sort == 3:  # missing
        data["extends"] = rng.choice(["nope.toml", "sub/nope.toml", "nope", "NOPE.TOML", "lab", f"{EVIL_PACKAGE}"])
        expect = "extends: "
    elif sort == 4:  # escaping the folder
        value = rng.choice(
            [
                up,
                str(ws.outside),
                f"sub/../{up}",
                f"./{up}",
                f"{EVIL_PACKAGE}/../{up}",
                "/etc/passwd",
                "//etc/passwd",
                "..",
                "../",
                "~/outside.toml",
                str(ws.main),  # absolute, even though it names a file inside
                "linked.toml",
                "linkdir/outside.toml",
            ]
        )
        if value == "linked.toml":
            links["linked.toml"] = up
        elif value.startswith("linkdir/"):
            links["linkdir"] = os.path.dirname(up) or "."
        data["extends"], expect = value, "extends: "
    elif sort == 5:  # not a string
        value = rng.choice([3, 1.5, True, ["base.toml"], {"path": "base.toml"}, dt.date(2020, 1, 1), math.nan, ""])
        data["extends"], expect = value, "extends: "
    elif sort == 6:  # hostile strings
        value = rng.choice(
            [" ", "\x00", "base.toml\x00", "a" * 5000, "a/" * 3000 + "x", "\n", *CONTROL, *MARKUP, "é" * 300]
        )
        data["extends"], expect = value, "extends: "
    elif sort == 7:  # an extended file that is itself damaged or escapes
        bad = rng.choice(
            [
                b'name = "x"\ncaf\xe9 = 1\n',
                b"[model\n",
                b'extends = "../../outside.toml"\n',
                b'extends = "' + up.encode() + b'"\n',
                b"\x00\x00",
                b"a = " + b"[" * 300 + b"]" * 300 + b"\n",
                b'name = 3\n[data]\nkind = "nope"\n',
            ]
        )
        target = rng.choice(["broken.toml", "sub/broken.toml"])
        files[target] = bad
        data["extends"], expect = target, None
    else:  # a folder where a file should be, or a file that does not end in .toml
        target = rng.choice(["sub", f"{EVIL_PACKAGE}", f"{EVIL_MODULE}.py", "lab/__init__.py"])
        if target == "sub":
            files["sub/keep.toml"] = b'name = "x"\n'
        data["extends"], expect = target, None
    return Case("extends", f"extends = {toml_value(data['extends'])[:100]}", dumps(data).encode(), files, links, expect=expect)


def m_bytes(rng: random.Random, raw: bytes, ws: Workspace) -> Case:
    sort = rng.randrange(13)
    pos = rng.randrange(len(raw) + 1)
    expect = None
    if sort == 0:
        bad = rng.choice([b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xfe\xff"])
        out, note = raw[:pos] + bad + raw[pos:], f"invalid UTF-8 {bad!r} at byte {pos}"
    elif sort == 1:
        out, note = raw[:pos], f"truncated at byte {pos}"
    elif sort == 2:
        out, note = raw[:pos] + b"\x00" * rng.randint(1, 3) + raw[pos:], f"NUL at byte {pos}"
    elif sort == 3:
        out = bytearray(raw)
        flips = [rng.randrange(len(out)) for _ in range(rng.randint(1, 8))]
        for i in flips:
            out[i] ^= rng.randint(1, 255)
        out, note = bytes(out), f"bytes flipped at {flips}"
    elif sort == 4:
        out, note, expect = b"\xef\xbb\xbf" + raw, "BOM", "same"
    elif sort == 5:
        out, note, expect = raw.replace(b"\n", b"\r\n"), "CRLF line endings", "same"
    elif sort == 6:
        out, note, expect = b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"), "BOM and CRLF", "same"
    elif sort == 7:
        out, note = raw.replace(b"\n", b"\r", rng.randint(1, 5)), "lone CR"
    elif sort == 8:
        out, note = raw.decode("utf-8").encode(rng.choice(["utf-16", "utf-32", "utf-16-be"])), "UTF-16/32"
    elif sort == 9:
        out, note = raw[:pos] + b"\xef\xbb\xbf" + raw[pos:], f"BOM at byte {pos}"
    elif sort == 10:
        out, note = raw + b"#" * (1 << 20), "larger than 1 MiB"
    elif sort == 11:
        out, note = raw[:pos] + rng.randbytes(rng.randint(1, 64)) + raw[pos:], f"random bytes at {pos}"
    else:
        snippet = rng.choice([b"[", b"]]", b'"""', b"'''", b"=", b"\\", b"{", b"#", b"[[model]]\n", b"\n[model]\n"])
        out, note = raw[:pos] + snippet + raw[pos:], f"{snippet!r} at byte {pos}"
    return Case("bytes", note, out, expect=expect)


def m_custom(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    sections = rng.choice([["model"], ["data"], ["model", "data"]])
    notes = []
    for section in sections:
        target = rng.choice(TARGETS) if rng.random() < 0.9 else junk(rng)
        old = data.get(section)
        if isinstance(old, dict) and old.get("kind") == "custom" and rng.random() < 0.5:
            old["target"] = target
        else:
            data[section] = _custom_table(rng, section, target)
        notes.append(f"{section}.target = {toml_value(target)[:60]}")
    allow: tuple[str, ...] = ()
    if rng.random() < 0.4:  # prefixes that look close but must not cover the planted modules
        allow = (
            rng.choice(
                ["exp_fuzz_evi", f"{EVIL_MODULE}s", f"{EVIL_MODULE}.x", "EXP_FUZZ_EVIL", "la", "labs", "lab.model", "."]
            ),
        )
    return Case("custom", "; ".join(notes), dumps(data).encode(), allow=allow)


def _override_key(rng: random.Random, data: dict[str, Any]) -> str:
    sort = rng.randrange(5)
    found = [".".join(_key(str(p)) for p in path) for _, _, path in leaves(data) if all(isinstance(p, str) for p in path)]
    if sort == 0 and found:
        return rng.choice(found)
    if sort == 1 and found:
        return rng.choice(found) + "." + _key(random_name(rng))
    if sort == 2:
        return rng.choice(["model", "data", "name", "extends", "train.steps", 'seeds."data.shuffle"', "model.args"])
    if sort == 3:
        return _key(random_name(rng))
    return rng.choice(["", "=", "a=b", ".", "a.", ".a", '"', "[x]", "a b", "\x1b[2J", "-x", "--json", "a" + ".a" * 300])


def _override_value(rng: random.Random) -> str:
    sort = rng.randrange(6)
    if sort == 0:
        return toml_value(junk(rng))
    if sort == 1:
        return rng.choice(["adam", "custom", "", " ", "a b", "[", "{", '"', "'", "=", "\\", "1_", "0x", "--"])
    if sort == 2:
        depth = rng.choice([10, 200, 2000, 5000])
        return rng.choice(["[" * depth + "]" * depth, "[" * depth, "{a=" * depth + "1" + "}" * depth])
    if sort == 3:
        return rng.choice(CONTROL + MARKUP + UNICODE)
    if sort == 4:
        return rng.choice(["9" * 4301, "-" + "9" * 5000, "1" + "0" * 400, "1e400", "nan"])
    return rng.choice([f"{EVIL_MODULE}:make", "lab.models:make_regressor", "../outside.toml", "/etc/passwd"])


def m_override(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    overrides = [f"{_override_key(rng, data)}={_override_value(rng)}" for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.15:  # make the model custom on the command line
        overrides = ["model.kind=custom", f"model.target={rng.choice(TARGETS[:6])}", *overrides[:1]]
    if rng.random() < 0.1:
        overrides.append(rng.choice(["noequals", "a.b", ""]))
    note = "overrides " + " ".join(repr(o[:80]) for o in overrides)
    return Case("override", note, ws.main.read_bytes(), overrides=tuple(overrides))


DATA_MUTATIONS: dict[str, Callable[[random.Random, dict[str, Any], Workspace], Case]] = {
    "leaf": m_leaf,
    "delete": m_delete,
    "unknown_key": m_unknown_key,
    "rename": m_rename,
    "kind": m_kind,
    "nesting": m_nesting,
    "extends": m_extends,
    "custom": m_custom,
    "override": m_override,
}


def m_mixed(rng: random.Random, data: dict[str, Any], ws: Workspace) -> Case:
    """Several structural mutations on one spec: problems must all be reported, one line each."""
    notes = []
    text = b""
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["leaf", "delete", "unknown_key", "rename", "kind"])
        case = DATA_MUTATIONS[kind](rng, data, ws)
        notes.append(case.note)
        text = case.text
    return Case("mixed", " | ".join(notes), text)


def make_case(spec_rng: random.Random, kind: str, ws: Workspace) -> Case:
    """The mutation `kind` of the example copied into `ws`."""
    raw = ws.main.read_bytes()
    if kind == "bytes":
        return m_bytes(spec_rng, raw, ws)
    data = tomllib.loads(raw.decode("utf-8"))
    if kind == "mixed":
        return m_mixed(spec_rng, data, ws)
    return DATA_MUTATIONS[kind](spec_rng, data, ws)


# ---------------------------------------------------------------------------
# Running a case and checking every promise.


def snapshot(*roots: Path) -> dict[str, str]:
    """Every path under `roots` with a digest of its content: any write shows up as a difference."""
    out: dict[str, str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    out[path] = "link:" + os.readlink(path)
                elif os.path.isdir(path):
                    out[path] = "dir"
                else:
                    with open(path, "rb") as handle:
                        out[path] = hashlib.sha256(handle.read()).hexdigest()
    return out


def line_pattern(ws: Workspace) -> re.Pattern[str]:
    """`FILE[:LINE]: text`, FILE being the spec, `<command line>`, or another spec file of the workspace."""
    files = "|".join([re.escape(str(ws.main)), re.escape("<command line>"), re.escape(str(ws.root)) + r"/[^:\n]+"])
    return re.compile(rf"^(?:{files})(?::[1-9][0-9]*)?: [^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")


@dataclass
class Outcome:
    """What one trial did."""

    exit: int | None = None
    """Exit status of the first command (validate, or plan when the case has overrides)."""
    traceback: bool = False
    files: bool = False
    failures: list[str] = field(default_factory=list)
    """One `category: detail` line per broken promise."""
    log: list[str] = field(default_factory=list)
    """Commands, outputs and exceptions, for the failure report."""


def _expected_problems(ws: Workspace, overrides: tuple[str, ...]) -> list[str] | None:
    """The problem lines the library reports, to hold the command line's output to."""
    from exp.compiler import plan_spec
    from exp.spec import SpecError

    try:
        plan_spec(ws.main, list(overrides))
    except SpecError as err:
        return [str(p) for p in err.problems]
    except Exception:  # noqa: BLE001 - the command reports this one as a traceback
        return None
    return []


def _has_custom_targets(ws: Workspace) -> bool:
    from exp.compiler import plan_spec
    from exp.spec import custom_targets

    try:
        return bool(custom_targets(plan_spec(ws.main).spec))
    except Exception:  # noqa: BLE001
        return False


class Trial:
    """Runs the commands of one case in its workspace and records broken promises."""

    def __init__(self, ws: Workspace, case: Case, rng: random.Random) -> None:
        self.ws, self.case, self.rng = ws, case, rng
        self.outcome = Outcome()
        self.pattern = line_pattern(ws)
        self.runner = CliRunner()

    def fail(self, category: str, detail: str) -> None:
        self.outcome.failures.append(f"{category}: {detail}")

    def invoke(self, args: list[str], expected: list[str] | None = None, must_hold: str | None = None) -> int:
        """Run `exp ARGS` in-process and check the promises every command makes."""
        before_modules = set(sys.modules)
        before = snapshot(self.ws.root)
        with contextlib.chdir(self.ws.cwd):
            result = self.runner.invoke(app, args)
        after = snapshot(self.ws.root)
        shown = " ".join(repr(a) if not a.isprintable() or " " in a else a for a in args)[:400]
        self.outcome.log.append(f"$ exp {shown}\n  exit {result.exit_code}; output: {result.output[:3000]!r}")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.outcome.traceback = True
            tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else repr(result.exception)
            self.outcome.log.append("  " + "\n  ".join(tb.splitlines()[-8:]))
            self.fail("traceback", f"{type(result.exception).__name__}: {str(result.exception)[:200]}")
        elif "Traceback" in result.output:
            self.outcome.traceback = True
            self.fail("traceback", "'Traceback' in the output")
        elif result.exit_code not in (0, 2):
            self.fail("exit code", f"{result.exit_code} from exp {args[0]}")
        imported = [m for m in set(sys.modules) - before_modules if _planted(sys.modules.get(m), self.ws)]
        for name in imported:
            sys.modules.pop(name, None)
        if after != before or imported:
            self.outcome.files = True
            added = sorted(set(after) - set(before))
            changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
            removed = sorted(set(before) - set(after))
            self.fail(
                "files",
                f"exp {args[0]}: created {added[:5]}, changed {changed[:5]}, removed {removed[:5]}, imported {imported}",
            )
        if result.exit_code == 2 and (result.exception is None or isinstance(result.exception, SystemExit)):
            self.check_lines(args, result.output, expected, must_hold)
        return result.exit_code

    def check_lines(self, args: list[str], output: str, expected: list[str] | None, must_hold: str | None) -> None:
        lines = [line for line in output.splitlines() if line.strip()]
        if not lines:
            self.fail("error lines", f"exp {args[0]} exited 2 and printed nothing")
        bad = [line for line in lines if not self.pattern.match(line)]
        if bad:
            self.fail("error lines", f"exp {args[0]}: not FILE[:LINE]: ...: {bad[0][:300]!r}")
        if expected is not None and lines != expected:
            self.fail("error lines", f"exp {args[0]} printed {lines[:3]!r}, the problems are {expected[:3]!r}")
        if must_hold is not None and not any(must_hold in line for line in lines):
            self.fail("expectation", f"exp {args[0]}: no problem line holds {must_hold!r}: {lines[:3]!r}")

    def run(self) -> Outcome:
        ws, case, rng = self.ws, self.case, self.rng
        main = str(ws.main)
        must_hold = case.expect if case.expect not in (None, "accept", "same") else None
        baseline = None
        if case.expect == "same":  # the unmutated spec, for comparison
            with contextlib.chdir(ws.cwd):
                result = self.runner.invoke(app, ["validate", main])
            baseline = (result.exit_code, result.output)
        write_case(ws, case)
        allow = [a for prefix in case.allow for a in ("--allow-import", prefix)]
        if case.overrides:
            expected = _expected_problems(ws, case.overrides)
            first = ["plan", main, "--json", "--", *case.overrides]
            code = self.invoke(first, expected, must_hold)
        else:
            expected = _expected_problems(ws, ())
            first = ["validate", main, *allow]
            code = self.invoke(first, expected, must_hold)
            if rng.random() < 0.3:
                self.invoke(["plan", main, "--json"], expected, must_hold)
        self.outcome.exit = code
        if case.expect == "accept" and code != 0:
            self.fail("expectation", "a spec that must be accepted was refused")
        if must_hold is not None and code == 0:
            self.fail("expectation", f"accepted, but a problem holding {must_hold!r} was expected")
        if baseline is not None:
            with contextlib.chdir(ws.cwd):
                result = self.runner.invoke(app, ["validate", main])
            if (result.exit_code, result.output) != baseline:
                self.fail("expectation", f"{case.note}: output differs from the unmutated spec's: {result.output!r}")
        run_dir = str(ws.cwd / "run")
        if code == 2 and rng.random() < 0.3:
            # Refused by validate/plan: `exp run` must refuse it too, before writing anything.
            self.invoke(["run", main, "--run-dir", run_dir, *allow, "--", *case.overrides], None, must_hold)
        elif code == 0 and not case.overrides and _has_custom_targets(ws) and rng.random() < 0.5:
            # Accepted, but importing the targets needs --allow-import: refused, nothing run.
            run = self.invoke(["run", main, "--run-dir", run_dir, *allow], None, "--allow-import")
            if run != 2:
                self.fail("expectation", f"exp run of custom targets without --allow-import exited {run}")
        return self.outcome


def _planted(module: Any, ws: Workspace) -> bool:
    path = getattr(module, "__file__", None) or ""
    return str(path).startswith(str(ws.root)) or getattr(module, "__name__", "").startswith("exp_fuzz_")


def write_case(ws: Workspace, case: Case) -> None:
    ws.main.write_bytes(case.text)
    for rel, content in case.files.items():
        path = ws.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for name, target in case.links.items():
        (ws.folder / name).symlink_to(target)


def trial_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def run_trial(seed: int, index: int, kind: str | None = None, spec: Path | None = None) -> tuple[Case, Outcome]:
    """Trial `index` of the run seeded `seed` (its kind and example drawn from them unless given)."""
    rng = trial_rng(seed, index)
    spec = spec or rng.choice(SPECS)
    kind = kind or rng.choice(KINDS)
    with workspace(spec) as ws:
        case = make_case(rng, kind, ws)
        case.spec = spec
        return case, Trial(ws, case, rng).run()


def report(seed: int, index: int, case: Case, outcome: Outcome) -> str:
    """Everything needed to see and replay a failing trial."""
    spec = case.spec.relative_to(ROOT) if case.spec else "?"
    lines = [
        f"FAILED trial {index} (seed {seed}; replay: python -m tests.reliability.fuzz_specs --seed {seed} "
        f"--trial {index}) {spec}, {case.kind}: {case.note[:300]}",
        *(f"  {f}" for f in outcome.failures),
        f"  mutated spec: {case.text[:4000]!r}",
    ]
    lines += [f"  extra file {rel}: {content[:300]!r}" for rel, content in case.files.items()]
    lines += [f"  link {name} -> {target}" for name, target in case.links.items()]
    lines += ["  " + entry.replace("\n", "\n  ") for entry in outcome.log]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.fuzz_specs", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500, help="number of mutated specs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trial", type=int, default=None, help="replay only this trial of the seeded run")
    parser.add_argument("--kind", choices=KINDS, default=None, help="only this mutation kind")
    parser.add_argument("--show", type=int, default=10, help="failing trials to print in full")
    args = parser.parse_args(argv)

    print(f"seed {args.seed}", flush=True)
    indices = [args.trial] if args.trial is not None else range(args.count)
    n = accepted = rejected = tracebacks = created = other = shown = 0
    start = time.perf_counter()
    for index in indices:
        case, outcome = run_trial(args.seed, index, args.kind)
        n += 1
        accepted += outcome.exit == 0
        rejected += outcome.exit == 2
        tracebacks += outcome.traceback
        created += outcome.files
        other += bool(outcome.failures) and not (outcome.traceback or outcome.files)
        if outcome.failures and shown < args.show:
            shown += 1
            print(report(args.seed, index, case, outcome), flush=True)
    print(SUMMARY.format(n=n, a=accepted, r=rejected, t=tracebacks, f=created))
    if other:
        print(f"other broken promises (exit code, error-line shape, expectations): {other} trials")
    print(f"wall time: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 1 if tracebacks or created or other else 0


if __name__ == "__main__":
    sys.exit(main())
