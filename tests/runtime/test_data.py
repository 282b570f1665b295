"""Data sources: stateless order, disjoint splits, padded eval, content fingerprints."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from expspec.compiler import plan_spec
from expspec.runtime.data import DataSource, build_data
from expspec.runtime.data.base import EVAL_LIMIT, DataError
from expspec.spec import ImportNotAllowed, SpecError
from tests.conftest import EXAMPLES, ROOT

DIGITS = EXAMPLES / "digits_mlp.toml"
CHARS = EXAMPLES / "char_transformer.toml"


def build(*overrides: str, spec: Path = DIGITS, allow: tuple[str, ...] = ()):
    plan = plan_spec(spec, list(overrides))
    return build_data(plan.spec.data, plan.seeds, Path(spec).parent, allow), plan


def synthetic(**fields) -> str:
    body = ", ".join(f"{k}={v!r}" if not isinstance(v, str) else f'{k}="{v}"' for k, v in fields.items())
    return f'data={{kind="synthetic", {body}}}'


def row_ids(rows: np.ndarray, reference: np.ndarray) -> list[int]:
    """Index in `reference` of each row of `rows` (rows of continuous data are unique)."""
    lookup = {row.tobytes(): i for i, row in enumerate(reference)}
    return [lookup[row.tobytes()] for row in rows]


def sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


@pytest.fixture(scope="module")
def digits():
    return build()


@pytest.fixture(scope="module")
def digits_arrays():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target


# --- statelessness ------------------------------------------------------------


def test_train_batches_are_a_pure_function_of_the_step():
    spec = synthetic(samples=200, batch_size=16)  # 160 train, 10 steps per epoch
    forward, _ = build(spec)
    shuffled, _ = build(spec)
    steps = list(range(35))
    expected = {s: forward.train_batch(s) for s in steps}
    for s in np.random.default_rng(0).permutation(steps):
        got = shuffled.train_batch(int(s))
        np.testing.assert_array_equal(got["x"], expected[s]["x"])
        np.testing.assert_array_equal(got["y"], expected[s]["y"])
    assert not np.array_equal(expected[0]["x"], expected[1]["x"])


def test_same_batch_in_a_fresh_process():
    spec = synthetic(samples=200, batch_size=16)
    source, _ = build(spec)
    here = hashlib.sha256(source.train_batch(23)["x"].tobytes()).hexdigest()
    code = (
        "import hashlib; from pathlib import Path\n"
        "from expspec.compiler import plan_spec\nfrom expspec.runtime.data import build_data\n"
        f"p = plan_spec({str(DIGITS)!r}, [{spec!r}])\n"
        "s = build_data(p.spec.data, p.seeds, Path('.'))\n"
        "print(hashlib.sha256(s.train_batch(23)['x'].tobytes()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here


def test_an_epoch_covers_each_train_example_once_and_the_next_reshuffles():
    source, _ = build(synthetic(samples=200, batch_size=16))
    assert isinstance(source, DataSource)
    x_train = np.concatenate([source.train_batch(s)["x"] for s in range(10)])
    reference = np.concatenate([source.train_batch(s)["x"] for s in range(10, 20)])
    epoch0 = row_ids(x_train, reference)  # epoch 0 expressed in epoch 1's positions
    assert sorted(epoch0) == list(range(160)), "epochs 0 and 1 must hold the same 160 examples, once each"
    assert epoch0 != list(range(160)), "epoch 1 must be a different order"
    assert source.info.train_size == 160


def test_an_epoch_never_repeats_a_train_row(digits, digits_arrays):
    source, _ = digits
    x_all, y_all = digits_arrays
    steps = source.info.train_size // 64  # the partial last batch is left for the next epoch
    drawn = np.concatenate([np.column_stack([b["x"], b["y"]]) for b in map(source.train_batch, range(steps))])
    pool = np.column_stack([x_all, y_all])[source.train_index]
    # Digits holds duplicate images, so compare multisets: no row is drawn more
    # often than the train split holds it.
    unique, held = np.unique(pool, axis=0, return_counts=True)
    available = {bytes(row): count for row, count in zip(unique, held)}
    rows, counts = np.unique(drawn, axis=0, return_counts=True)
    assert len(drawn) == steps * 64
    assert all(count <= available.get(bytes(row), 0) for row, count in zip(rows, counts))


def test_fewer_examples_than_a_batch_wraps_deterministically():
    source, _ = build(synthetic(samples=10, batch_size=16))
    assert source.info.train_size == 8
    a, b = source.train_batch(4), build(synthetic(samples=10, batch_size=16))[0].train_batch(4)
    assert a["x"].shape == (16, 16)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert len(np.unique(a["x"], axis=0)) == 8


# --- splits and evaluation ----------------------------------------------------


def check_eval(source, x_eval: np.ndarray, y_eval: np.ndarray, batch_size: int) -> None:
    batches = source.eval_batches()
    assert all(b["x"].shape[0] == b["y"].shape[0] == b["weight"].shape[0] == batch_size for b in batches)
    assert all(b["weight"].dtype == np.float32 for b in batches)
    weight = np.concatenate([b["weight"] for b in batches])
    x = np.concatenate([b["x"] for b in batches])
    y = np.concatenate([b["y"] for b in batches])
    real = weight == 1.0
    assert set(np.unique(weight)) <= {0.0, 1.0}
    assert weight.sum() == source.info.eval_size == len(x_eval)
    np.testing.assert_array_equal(sorted_rows(x[real]), sorted_rows(x_eval))
    np.testing.assert_array_equal(np.sort(y[real]), np.sort(y_eval))
    np.testing.assert_array_equal(x[~real], np.broadcast_to(x[0], x[~real].shape))
    again = source.eval_batches()
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in again]), x)


def test_digits_split_is_disjoint_and_eval_covers_the_held_out(digits, digits_arrays):
    source, plan = digits
    x_all, y_all = digits_arrays
    train, held = source.train_index, source.eval_index
    assert not set(train) & set(held)
    assert sorted([*train, *held]) == list(range(len(x_all)))
    assert len(held) == round(len(x_all) * plan.spec.data.test_fraction)
    check_eval(source, x_all[held], y_all[held], plan.spec.data.batch_size)
    x = source.train_batch(0)["x"]
    assert set(map(bytes, x)) <= set(map(bytes, x_all[train]))


def test_synthetic_split_is_disjoint_and_eval_covers_the_held_out():
    source, _ = build(synthetic(samples=300, batch_size=32))
    x = np.concatenate([source._x_train, source._x_eval])
    ids_train = row_ids(np.concatenate([source.train_batch(s)["x"] for s in range(8)]), x)
    eval_batches = source.eval_batches()
    ids_eval = row_ids(np.concatenate([b["x"][b["weight"] == 1] for b in eval_batches]), x)
    assert len(ids_eval) == len(set(ids_eval)) == 60 == source.info.eval_size
    assert not set(ids_train) & set(ids_eval)
    check_eval(source, source._x_eval, source._y_eval, 32)


def test_eval_is_capped_at_the_limit():
    source, _ = build(synthetic(samples=30000, features=2, batch_size=1000))
    weights = np.concatenate([b["weight"] for b in source.eval_batches()])
    assert weights.sum() == source.info.eval_size == EVAL_LIMIT
    assert len(weights) == 5000


# --- kinds --------------------------------------------------------------------


def test_digits_dims_and_dtypes(digits):
    source, _ = digits
    assert (source.info.task, source.info.input_dim, source.info.num_classes) == ("classification", 64, 10)
    batch = source.train_batch(0)
    assert batch["x"].dtype == np.float32 and batch["x"].shape == (64, 64)
    assert batch["y"].dtype == np.int32 and batch["y"].shape == (64,)
    assert 0.0 <= batch["x"].min() and batch["x"].max() <= 1.0


def test_synthetic_regression_and_classification():
    reg, _ = build(synthetic(task="regression", batch_size=16))
    assert reg.info.task == "regression" and reg.info.input_dim == 16 and reg.info.num_classes is None
    batch = reg.train_batch(0)
    assert batch["x"].dtype == np.float32 and batch["y"].dtype == np.float32 and batch["y"].shape == (16,)
    cls, _ = build(synthetic(classes=5, features=8))
    y = np.concatenate([cls._y_train, cls._y_eval])
    assert cls.info.num_classes == 5 and y.dtype == np.int32 and set(np.unique(y)) == set(range(5))


def write_text(tmp_path: Path, data: bytes, name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def text_override(path: Path, seq_len: int = 16, batch_size: int = 4) -> str:
    return f'data={{kind="text_chars", path="{path}", seq_len={seq_len}, batch_size={batch_size}, test_fraction=0.25}}'


def test_text_windows_are_shifted_bytes_of_the_file(tmp_path):
    raw = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    source, _ = build(text_override(write_text(tmp_path, raw)), spec=CHARS)
    info = source.info
    assert (info.task, info.vocab_size, info.seq_len) == ("lm", 256, 16)
    assert info.train_size == (3000 - 1) // 16 and info.eval_size == (1000 - 1) // 16
    batch = source.train_batch(3)
    assert batch["x"].dtype == batch["y"].dtype == np.int32 and batch["x"].shape == (4, 16)
    np.testing.assert_array_equal(batch["x"][:, 1:], batch["y"][:, :-1])
    for x, y in zip(batch["x"], batch["y"]):
        at = raw.find(bytes(x.astype(np.uint8)) + bytes(y[-1:].astype(np.uint8)))
        assert at % 16 == 0 and at + 17 <= 3000, "train windows start at multiples of seq_len in the head"
    for b in source.eval_batches():
        for x in b["x"][b["weight"] == 1]:
            at = raw.find(bytes(x.astype(np.uint8)))
            assert at >= 3000 and (at - 3000) % 16 == 0, "eval windows come from the tail"
    starts = {
        raw.find(bytes(x.astype(np.uint8))) for s in range(info.train_size // 4) for x in source.train_batch(s)["x"]
    }
    assert len(starts) == info.train_size // 4 * 4


SHIPPED_TEXT = EXAMPLES / "data" / "python_docs_topics.txt"
SHIPPED_SHA256 = "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4"
"""The committed text's bytes: an edit (or a checkout that rewrites line endings) changes every lock."""


def test_char_example_trains_on_the_shipped_text(tmp_path):
    source, plan = build(spec=CHARS)
    assert plan.spec.data.path == "data/python_docs_topics.txt"
    assert hashlib.sha256(SHIPPED_TEXT.read_bytes()).hexdigest() == SHIPPED_SHA256
    assert source.fingerprint == SHIPPED_SHA256, "the run's data input is the shipped file's content"
    assert source.info.vocab_size == 256 and source.info.train_size > 1000
    batch = source.train_batch(0)
    np.testing.assert_array_equal(batch["x"][:, 1:], batch["y"][:, :-1])
    assert 2.0 < source.unigram_entropy() < math.log(256)
    two, _ = build(text_override(write_text(tmp_path, b"ab" * 400)), spec=CHARS)
    assert two.unigram_entropy() == pytest.approx(math.log(2))


def test_no_module_reads_data_shipped_with_the_installed_python():
    """Such data differs between patch releases of one Python, which the environment class does not tell apart."""
    sources = [
        p for folder in ("expspec", "spec", "compiler", "runtime", "audit") for p in (ROOT / folder).rglob("*.py")
    ]
    assert len(sources) > 20
    assert [str(p.relative_to(ROOT)) for p in sources if "pydoc_data" in p.read_text(encoding="utf-8")] == []
    with pytest.raises(SpecError, match="data.source: unknown key"):
        build('data.source="python-docs"', spec=CHARS)


def test_text_too_short_or_missing_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="too short"):
        build(text_override(write_text(tmp_path, b"x" * 40)), spec=CHARS)
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="nope.txt"):
        build(text_override(missing), spec=CHARS)


def npz_override(path: Path, **extra: str) -> str:
    more = "".join(f', {k}="{v}"' for k, v in extra.items())
    return f'data={{kind="npz", path="{path}", batch_size=8{more}}}'


def test_npz_classification_split_and_eval(tmp_path):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((100, 3, 2)), rng.integers(0, 7, 100).astype(np.int64)
    y[0] = 6
    path = tmp_path / "d.npz"
    np.savez(path, feats=x, labels=y)
    source, _ = build(npz_override(path, inputs="feats", targets="labels"))
    assert (source.info.task, source.info.input_dim, source.info.num_classes) == ("classification", 6, 7)
    flat = x.reshape(100, -1).astype(np.float32)
    assert not set(source.train_index) & set(source.eval_index)
    assert len(source.eval_index) == 20
    check_eval(source, flat[source.eval_index], y[source.eval_index].astype(np.int32), 8)
    batch = source.train_batch(0)
    assert set(row_ids(batch["x"], flat)) <= set(source.train_index)
    assert batch["y"].dtype == np.int32


def test_npz_float_targets_are_regression(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, x=np.ones((20, 4), np.float64), y=np.linspace(0, 1, 20))
    source, _ = build(npz_override(path))
    assert source.info.task == "regression" and source.train_batch(0)["y"].dtype == np.float32


def test_npz_errors_name_the_file_and_array(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, x=np.ones((10, 2)), y=np.arange(9))
    with pytest.raises(DataError, match=r"e\.npz.*10 examples.*9"):
        build(npz_override(path))
    with pytest.raises(DataError, match=r"e\.npz.*no array named 'feats'"):
        build(npz_override(path, inputs="feats"))
    objects = tmp_path / "o.npz"
    np.savez(objects, x=np.array([{"a": 1}, None] * 5, dtype=object), y=np.arange(10))
    with pytest.raises(DataError, match="pickle"):
        build(npz_override(objects))
    with pytest.raises(DataError, match="missing.npz"):
        build(npz_override(tmp_path / "missing.npz"))


# --- fingerprints ---------------------------------------------------------------


def test_fingerprints_follow_the_data(tmp_path, digits):
    hexdigest = digits[0].fingerprint
    assert len(hexdigest) == 64 and int(hexdigest, 16) >= 0
    assert build('seeds."data.shuffle"=99')[0].fingerprint == hexdigest  # same data, other order

    raw = bytearray(b"hello world, " * 20)
    path = write_text(tmp_path, bytes(raw))
    first = build(text_override(path), spec=CHARS)[0].fingerprint
    assert build(text_override(path), spec=CHARS)[0].fingerprint == first
    raw[7] ^= 1
    path.write_bytes(bytes(raw))
    assert build(text_override(path), spec=CHARS)[0].fingerprint != first

    array = np.arange(40, dtype=np.float32).reshape(20, 2)
    npz = tmp_path / "f.npz"
    np.savez(npz, x=array, y=np.arange(20) % 3)
    before = build(npz_override(npz))[0].fingerprint
    assert before == hashlib.sha256(npz.read_bytes()).hexdigest()
    array[5, 1] = 1000
    np.savez(npz, x=array, y=np.arange(20) % 3)
    assert build(npz_override(npz))[0].fingerprint != before

    spec = synthetic(samples=64)
    base = build(spec)[0].fingerprint
    assert build(spec)[0].fingerprint == base
    assert build(spec, "seed=12345")[0].fingerprint != base
    assert build(spec, 'seeds."data.shuffle"=5')[0].fingerprint == base
    assert build(synthetic(samples=65))[0].fingerprint != base


# --- custom ---------------------------------------------------------------------

CUSTOM_MODULE = """
import numpy as np


class Classes:
    num_classes = 3

    def __init__(self, seed, n):
        self.seed, self.n = seed, n

    def train_batch(self, step):
        rng = np.random.default_rng([self.seed, step])
        return {"x": rng.standard_normal((self.n, 5)), "y": rng.integers(0, 3, self.n)}

    def eval_batches(self):
        return [self.train_batch(10**6)]


class Tokens(Classes):
    vocab_size = 11

    def train_batch(self, step):
        w = np.random.default_rng([self.seed, step]).integers(0, 11, (self.n, 7))
        return {"x": w[:, :-1], "y": w[:, 1:]}


class Unlabelled(Classes):
    num_classes = None


def make(seed, n=4):
    return Classes(seed, n)


def make_lm(seed, n=4):
    return Tokens(seed, n)


def make_bare(seed, n=4):
    return Unlabelled(seed, n)
"""


@pytest.fixture
def custom_spec(tmp_path):
    module = f"labdata_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{module}.py").write_text(CUSTOM_MODULE)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "t"\n\n[model]\nkind = "mlp"\n\n[data]\nkind = "custom"\n'
        f'target = "{module}:make"\nargs = {{n = 8}}\nbatch_size = 8\n\n[train]\nsteps = 10\n'
    )
    yield spec, module
    sys.modules.pop(module, None)


def test_custom_needs_an_allowance(custom_spec):
    spec, module = custom_spec
    with pytest.raises(ImportNotAllowed):
        build(spec=spec)
    assert module not in sys.modules


def test_custom_infers_info_and_fills_weights(custom_spec):
    spec, module = custom_spec
    source, plan = build(spec=spec, allow=(module,))
    assert source.obj.seed == plan.seeds["custom.data"]
    assert (source.info.task, source.info.input_dim, source.info.num_classes) == ("classification", 5, 3)
    batch = source.train_batch(2)
    assert batch["x"].dtype == np.float32 and batch["y"].dtype == np.int32 and batch["x"].shape == (8, 5)
    (evaluation,) = source.eval_batches()
    np.testing.assert_array_equal(evaluation["weight"], np.ones(8, np.float32))
    assert evaluation["weight"].dtype == np.float32 and evaluation["x"].dtype == np.float32
    assert len(source.fingerprint) == 64
    assert build("data.args={n=9}", spec=spec, allow=(module,))[0].fingerprint != source.fingerprint

    lm, _ = build(f'data.target="{module}:make_lm"', spec=spec, allow=(module,))
    assert (lm.info.task, lm.info.vocab_size, lm.info.seq_len) == ("lm", 11, 6)
    with pytest.raises(DataError, match="num_classes"):
        build(f'data.target="{module}:make_bare"', spec=spec, allow=(module,))
