"""Property tests: random valid specs round-trip; random mutations never crash."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from expspec.cli import app
from expspec.compiler import Plan, plan_spec
from expspec.spec import BASE_STREAMS
from expspec.spec.compose import compose
from tests.conftest import EXAMPLE_SPECS
from tests.helpers import to_toml

COMPLETE = [p for p in EXAMPLE_SPECS if p.name != "base.toml"]
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

fractions = st.floats(0, 0.9, allow_nan=False)
small = st.integers(1, 64)


@st.composite
def models(draw) -> dict[str, Any]:
    if draw(st.booleans()):
        return {
            "kind": "mlp",
            "hidden": draw(st.lists(st.integers(1, 512), max_size=4)),
            "activation": draw(st.sampled_from(["relu", "gelu", "tanh", "silu"])),
            "dropout": draw(fractions),
        }
    heads = draw(st.sampled_from([1, 2, 4, 8]))
    return {
        "kind": "transformer",
        "layers": draw(st.integers(1, 6)),
        "heads": heads,
        "d_model": heads * draw(st.integers(1, 32)),
        "d_ff": draw(st.integers(1, 1024)),
        "max_len": 512,
        "dropout": draw(fractions),
    }


@st.composite
def datas(draw, batch: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["sklearn_digits", "synthetic", "npz", "text_chars"]))
    data: dict[str, Any] = {"kind": kind, "batch_size": batch}
    if kind == "synthetic":
        data |= {
            "task": draw(st.sampled_from(["classification", "regression"])),
            "samples": draw(st.integers(2, 10**5)),
            "features": draw(small),
            "noise": draw(st.floats(0, 10)),
        }
    elif kind == "npz":
        data |= {"path": draw(st.sampled_from(["data.npz", "sub/x.npz", "/abs/y.npz"]))}
    elif kind == "text_chars":
        data |= {
            "path": draw(st.sampled_from(["corpus.txt", "data/text.txt", "/abs/t.txt"])),
            "seq_len": draw(st.integers(1, 256)),
        }
    if kind != "text_chars":
        data["test_fraction"] = draw(st.floats(0.01, 0.99))
    return data


@st.composite
def optimizers(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(["sgd", "momentum", "adam", "adamw", "lion"]))
    schedule = {
        "kind": draw(st.sampled_from(["constant", "cosine", "linear"])),
        "warmup_steps": draw(st.integers(0, 100)),
    }
    if schedule["kind"] != "constant" and draw(st.booleans()):
        schedule["decay_steps"] = draw(st.integers(1, 10**6))
    optimizer = {"kind": kind, "learning_rate": draw(st.floats(1e-6, 10)), "schedule": schedule}
    if draw(st.booleans()):
        optimizer["grad_clip_norm"] = draw(st.floats(0.01, 100))
    return optimizer


@st.composite
def experiments(draw) -> dict[str, Any]:
    accum = draw(st.sampled_from([1, 2, 4]))
    every = draw(st.integers(1, 500))
    contract = draw(st.sampled_from(["bitwise", "tolerance", "none"]))
    pinned = draw(st.dictionaries(st.sampled_from(BASE_STREAMS), st.integers(0, 2**31 - 1), max_size=3))
    return {
        "name": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)),
        "seed": draw(st.integers(0, 2**63 - 1)),
        "model": draw(models()),
        "data": draw(datas(accum * draw(st.integers(1, 64)))),
        "optimizer": draw(optimizers()),
        "train": {"steps": draw(st.integers(1, 10**6)), "grad_accum": accum, "log_every": draw(small)},
        "checkpoint": {
            "every_steps": every,
            "keep_last": draw(small),
            "keep_every": every * draw(small),
            "async": draw(st.booleans()),
        },
        "throttle": {"max_inflight": draw(st.integers(1, 16))},
        "seeds": pinned,
        "determinism": {"contract": contract, "threefry_partitionable": draw(st.booleans())},
        "mesh": {"data": draw(st.sampled_from([-1, 1, 2])), "fsdp": draw(st.sampled_from([1, 4]))},
    }


def _write(text: str | bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="exp-prop-"))
    path = folder / "spec.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@SETTINGS
@given(experiments())
def test_random_valid_specs_round_trip_through_plan_json(raw):
    path = _write(to_toml(raw))
    plan = plan_spec(path)
    text = plan.to_json()
    again = Plan.from_json(text)
    assert again == plan and again.to_json() == text
    assert plan_spec(path).to_json() == text  # compiling is deterministic
    assert {k: plan.seeds[k] for k in raw["seeds"]} == raw["seeds"]


JUNK = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.just(""),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.recursive(st.integers(), lambda inner: st.dictionaries(st.text(max_size=5), inner, max_size=2), max_leaves=40),
    st.sampled_from(["../../etc/passwd", "/nonexistent", "mlp", "custom", "os:system"]),
)


def _tables(data: dict[str, Any], prefix=()):
    yield prefix, data
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _tables(value, (*prefix, key))


def _mutate(data: dict[str, Any], rng: random.Random, junk: Any, word: str) -> None:
    tables = list(_tables(data))
    _, table = rng.choice(tables)
    action = rng.choice(["replace", "delete", "add", "rename", "kind"])
    keys = list(table)
    if action == "add" or not keys:
        table[word or "x"] = junk
    elif action == "replace":
        table[rng.choice(keys)] = junk
    elif action == "delete":
        del table[rng.choice(keys)]
    elif action == "rename":
        key = rng.choice(keys)
        table[(word or "y") + key] = table.pop(key)
    else:
        table["kind"] = (
            junk if rng.random() < 0.5 else rng.choice(["mlp", "transformer", "custom", "npz", "lion", "cosine"])
        )


def _assert_clean(path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


@SETTINGS
@given(
    st.sampled_from(COMPLETE),
    st.randoms(use_true_random=False),
    st.lists(st.tuples(JUNK, st.text(max_size=8)), min_size=1, max_size=3),
)
def test_mutated_examples_never_crash(spec, rng, mutations):
    data = compose(spec).data
    for junk, word in mutations:
        _mutate(data, rng, junk, word)
    _assert_clean(_write(to_toml(data)))


@SETTINGS
@given(st.sampled_from(COMPLETE), st.randoms(use_true_random=False), st.binary(min_size=1, max_size=4))
def test_byte_damaged_examples_never_crash(spec, rng, junk):
    raw = bytearray(spec.read_bytes())
    start = rng.randrange(len(raw))
    if rng.random() < 0.3:
        raw = raw[:start]
    else:
        raw[start : start + len(junk)] = junk
    path = _write(bytes(raw))
    (path.parent / "base.toml").write_bytes((spec.parent / "base.toml").read_bytes())
    (path.parent / "char_transformer.toml").write_bytes((spec.parent / "char_transformer.toml").read_bytes())
    _assert_clean(path)
