"""The spec fuzzer's mutations: each turns one example spec into a hostile `Case`.

Part of the spec-mutation fuzzer (`fuzz_specs.py`). One function `m_KIND` per
entry of `KINDS` (wrong leaf values, deleted, unknown and misspelled keys,
switched kinds, deep nesting, `extends` that cycle or escape, damaged bytes,
`custom` targets, command-line overrides, several at once); `make_case` picks
one by name. A mutation's choices depend only on the `random.Random` it gets.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import tomllib
from collections.abc import Callable
from typing import Any

from tests.helpers import toml_key as _key
from tests.reliability.fuzz_toml import dumps, leaves, nested, tables, toml_value
from tests.reliability.fuzz_values import (
    BAD_KINDS,
    CONTROL,
    MARKUP,
    UNICODE,
    VALID_KINDS,
    junk,
    near_miss,
    random_name,
)
from tests.reliability.fuzz_workspace import EVIL_MODULE, EVIL_PACKAGE, TARGETS, Case, Workspace

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
    if rng.random() < 0.2 and isinstance(data.setdefault("seeds", {}), dict):  # seed names are free-form keys
        path, table = ("seeds",), data["seeds"]
    else:
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
    return Case(
        "extends", f"extends = {toml_value(data['extends'])[:100]}", dumps(data).encode(), files, links, expect=expect
    )


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
    found = [
        ".".join(_key(str(p)) for p in path) for _, _, path in leaves(data) if all(isinstance(p, str) for p in path)
    ]
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
