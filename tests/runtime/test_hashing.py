"""Reproducibility hashes: canonical, sensitive to every bit, exact on device."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from expspec.runtime.engine.hashing import combine_fingerprints, device_fingerprints, full_hash, leaf_hashes, leaf_paths

# Builds the same tree in this process and in a fresh one.
TREE_SRC = textwrap.dedent(
    """
    import numpy as np, ml_dtypes
    rng = np.random.default_rng(1234)
    tree = {
        "params": {
            "dense": {"kernel": rng.standard_normal((5, 3)).astype(np.float32),
                      "bias": rng.standard_normal(3).astype(ml_dtypes.bfloat16)},
            "layers": [rng.integers(-9, 9, 4).astype(np.int32), rng.standard_normal(2).astype(np.float16)],
        },
        "step": np.int32(7),
    }
    """
)


def fixed_tree() -> dict:
    scope: dict = {}
    exec(TREE_SRC, scope)
    return scope["tree"]


def flip_bit(a: np.ndarray, index: int, bit: int) -> np.ndarray:
    """A copy of `a` with one bit of one element flipped."""
    uint = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    out = a.copy()
    flat = out.reshape(-1).view(uint)
    flat[index] ^= uint(1) << uint(bit)
    return out


jit_fingerprints = jax.jit(device_fingerprints)


def fp(tree) -> str:
    return combine_fingerprints(jit_fingerprints(tree))


# A pure-NumPy rendition of the device mixing, summed in whatever order we like.
def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _lowbias32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x7FEB352D)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x846CA68B)
    return h ^ (h >> np.uint32(16))


def reference_terms(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.ascontiguousarray(a).reshape(-1)
    if a.dtype == np.bool_:
        w = a.astype(np.uint32)
    else:
        w = a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}[a.dtype.itemsize]).astype(np.uint32)
    i = np.arange(w.size, dtype=np.uint32)
    lane_a = _fmix32(w ^ (i * np.uint32(0x9E3779B9)) ^ np.uint32(0x2545F491))
    lane_b = _lowbias32((w * np.uint32(0x27D4EB2F)) ^ (i * np.uint32(0x85EBCA77) + np.uint32(0x165667B1)))
    return lane_a, lane_b


def test_full_hash_is_stable_across_calls_and_processes():
    tree = fixed_tree()
    here = full_hash(tree)
    assert len(here) == 32 and int(here, 16) >= 0
    assert full_hash(fixed_tree()) == here
    code = TREE_SRC + "\nfrom expspec.runtime.engine.hashing import full_hash\nprint(full_hash(tree))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == here


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.int32, np.float16, np.int8, np.bool_])
@pytest.mark.parametrize("index", [0, 17, 59])
def test_one_bit_flip_changes_every_hash_and_only_its_leaf(dtype, index):
    rng = np.random.default_rng(0)
    target = rng.standard_normal((6, 10)).astype(dtype)
    tree = {"a": rng.standard_normal(4).astype(np.float32), "target": target, "z": np.arange(3, dtype=np.int32)}
    before_full, before_leaves, before_fps = full_hash(tree), leaf_hashes(tree), np.asarray(jit_fingerprints(tree))
    row = leaf_paths(tree).index("target")
    for bit in {0, dtype(0).itemsize * 4 - 1, dtype(0).itemsize * 8 - 1} if dtype is not np.bool_ else {0}:
        flipped = {**tree, "target": flip_bit(target, index, bit)}
        assert full_hash(flipped) != before_full
        after_leaves = leaf_hashes(flipped)
        assert {k for k in before_leaves if before_leaves[k] != after_leaves[k]} == {"target"}
        after_fps = np.asarray(jit_fingerprints(flipped))
        assert fp(flipped) != combine_fingerprints(before_fps)
        # Every term is a bijection of its element, so both lanes must move.
        assert (after_fps[row] != before_fps[row]).all()
        assert np.array_equal(np.delete(after_fps, row, 0), np.delete(before_fps, row, 0))


def test_insertion_order_is_irrelevant_but_names_dtypes_and_shapes_count():
    x = np.arange(12, dtype=np.float32)
    y = np.ones(3, dtype=np.int32)
    base = full_hash({"x": x, "y": y})
    assert full_hash({"y": y, "x": x}) == base
    assert fp({"y": y, "x": x}) == fp({"x": x, "y": y})
    assert full_hash({"x": x, "w": y}) != base
    assert full_hash({"x": x.view(np.int32), "y": y}) != base
    assert full_hash({"x": x.reshape(3, 4), "y": y}) != base
    assert full_hash({"x": x.reshape(1, 12), "y": y}) != base
    # Length-prefixed framing: moving bytes between leaves or across the path
    # separator is never a collision.
    assert full_hash({"a": x[:5], "b": x[5:]}) != full_hash({"a": x[:6], "b": x[6:]})
    assert full_hash({"a/b": x}) != full_hash({"a": {"b": x}})
    assert full_hash({"a": x}) != full_hash({"ab": x})
    # Unframed, path "x" + dtype "uint8" and path "xu" + dtype "int8" are the same bytes.
    b = np.arange(4, dtype=np.uint8)
    assert full_hash({"x": b}) != full_hash({"xu": b.view(np.int8)})


def test_orbax_style_string_indices_hash_like_lists():
    rng = np.random.default_rng(3)
    layers = [rng.standard_normal((2, 2)).astype(np.float32) for _ in range(12)]
    as_list = {"layers": layers, "out": np.float32(1.5)}
    as_dict = {"layers": {str(i): a for i, a in enumerate(layers)}, "out": np.float32(1.5)}
    as_tuple = {"layers": tuple(jnp.asarray(a) for a in layers), "out": jnp.float32(1.5)}
    assert leaf_paths(as_list) == leaf_paths(as_dict) == leaf_paths(as_tuple)
    assert full_hash(as_list) == full_hash(as_dict) == full_hash(as_tuple)
    assert leaf_hashes(as_list) == leaf_hashes(as_dict)
    assert fp(as_list) == fp(as_dict) == fp(as_tuple)


def test_typed_prng_keys():
    k0, k0_again, k1 = jax.random.key(0), jax.random.key(0), jax.random.key(1)
    assert full_hash({"rng": k0}) == full_hash({"rng": k0_again})
    assert full_hash({"rng": k0}) != full_hash({"rng": k1})
    # The impl name is part of the hash: a key is not its raw data.
    assert full_hash({"rng": k0}) != full_hash({"rng": jax.random.key_data(k0)})
    split = jax.random.split(k1, 4)
    assert full_hash({"rng": split}) == full_hash({"rng": jax.random.split(jax.random.key(1), 4)})
    assert fp({"rng": k0}) == fp({"rng": k0_again}) != fp({"rng": k1})
    assert np.array_equal(jax.jit(device_fingerprints)({"rng": split}), device_fingerprints({"rng": split}))


def test_device_fingerprints_jit_equals_eager_and_numpy_reference():
    rng = np.random.default_rng(5)
    tree = {
        "f32": rng.standard_normal((7, 13)).astype(np.float32),
        "bf16": rng.standard_normal(101).astype(ml_dtypes.bfloat16),
        "f16": rng.standard_normal((3, 3)).astype(np.float16),
        "i32": rng.integers(-(2**31), 2**31 - 1, 50).astype(np.int32),
        "i8": rng.integers(-128, 127, 9).astype(np.int8),
        "mask": rng.random(11) > 0.5,
        "scalar": np.float32(-0.0),
    }
    jitted = np.asarray(jax.jit(device_fingerprints)(tree))
    with jax.disable_jit():
        eager = np.asarray(device_fingerprints(tree))
    assert jitted.dtype == np.uint32 and jitted.shape == (len(tree), 2)
    assert np.array_equal(jitted, eager)
    assert np.array_equal(jitted, np.asarray(jax.jit(device_fingerprints)(fixed_copy(tree))))
    for row, path in enumerate(leaf_paths(tree)):
        lane_a, lane_b = reference_terms(np.asarray(tree[path]))
        assert [int(lane_a.sum(dtype=np.uint32)), int(lane_b.sum(dtype=np.uint32))] == jitted[row].tolist(), path


def test_64_bit_leaves_are_fingerprinted_whole_or_refused():
    x = np.random.default_rng(2).standard_normal(33)
    with pytest.raises(TypeError, match="float64"):
        device_fingerprints({"x": x})
    with jax.enable_x64(True):
        tree = {"f64": x, "i64": np.arange(-5, 5, dtype=np.int64), "c64": (x[:8] + 1j * x[8:16]).astype(np.complex64)}
        got = np.asarray(jax.jit(device_fingerprints)(tree))
        tiny = {"f64": flip_bit(x, 3, 0)}  # a change float32 rounding would lose
        assert not np.array_equal(jax.jit(device_fingerprints)(tiny)[0], got[leaf_paths(tree).index("f64")])
    for row, path in enumerate(leaf_paths(tree)):
        a = tree[path]
        if a.dtype.kind == "c":
            a = np.stack([a.real, a.imag], axis=-1)
        lane_a, lane_b = reference_terms(a)
        assert [int(lane_a.sum(dtype=np.uint32)), int(lane_b.sum(dtype=np.uint32))] == got[row].tolist(), path


def fixed_copy(tree: dict) -> dict:
    return {k: np.array(v, copy=True) for k, v in tree.items()}


def test_fingerprint_does_not_depend_on_reduction_order():
    # Odd, large size: XLA splits this reduction into uneven blocks.
    x = np.random.default_rng(9).standard_normal(1_000_003).astype(np.float32)
    got = np.asarray(jax.jit(device_fingerprints)({"x": x}))[0]
    lane_a, lane_b = reference_terms(x)
    perm = np.random.default_rng(1).permutation(x.size)
    for order in (np.arange(x.size), perm, perm[::-1]):
        assert [int(lane_a[order].sum(dtype=np.uint32)), int(lane_b[order].sum(dtype=np.uint32))] == got.tolist()
    # Pairwise-by-chunk sums land on the same value too: wrap-around addition.
    chunks = [int(c.sum(dtype=np.uint32)) for c in np.array_split(lane_a[perm], 37)]
    assert sum(chunks) % 2**32 == int(got[0])
    # Only the flattened element order enters the fingerprint, not the layout.
    y = x[:1_000_000]
    assert np.array_equal(device_fingerprints({"x": y.reshape(1000, 1000)}), device_fingerprints({"x": y}))


def test_device_fingerprints_trace_once_inside_a_jitted_step():
    traces = []

    @jax.jit
    def step(params):
        traces.append(1)
        params = jax.tree.map(lambda p: p * 2, params)
        return params, device_fingerprints(params)

    params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4, jnp.bfloat16)}
    p1, f1 = step(params)
    p2, f2 = step(p1)
    assert len(traces) == 1
    assert not np.array_equal(f1, f2)
    assert np.array_equal(f2, device_fingerprints(p2))


def test_leaf_paths_are_sorted_canonical_strings():
    one = np.ones(1, np.float32)
    tree = {"z": [one] * 12, "a": {"y": np.ones(2, np.float32), "b": (one, {"k": one})}, "m": one}
    paths = leaf_paths(tree)
    assert paths == sorted(paths)
    assert paths[:3] == ["a/b/0", "a/b/1/k", "a/y"]
    assert "z/10" in paths and "z/2" in paths and paths.index("z/10") < paths.index("z/2")
    assert list(leaf_hashes(tree)) == paths
    assert device_fingerprints(tree).shape == (len(paths), 2)


def test_combine_fingerprints_is_deterministic_and_checks_its_input():
    fps = np.array([[1, 2], [3, 4]], dtype=np.uint32)
    out = combine_fingerprints(fps)
    assert len(out) == 16 and out == combine_fingerprints(jnp.asarray(fps))
    assert out == combine_fingerprints(fps.astype(">u4"))
    assert out != combine_fingerprints(fps[::-1])
    with pytest.raises(ValueError):
        combine_fingerprints(fps.astype(np.int64))


def test_big_endian_arrays_hash_like_little_endian():
    x = np.arange(6, dtype=np.float32)
    assert full_hash({"x": x.astype(">f4")}) == full_hash({"x": x})


class _Twin:
    """A pytree node whose two children claim the same name."""

    def __init__(self, a, b):
        self.a, self.b = a, b


jax.tree_util.register_pytree_with_keys(
    _Twin,
    lambda t: (((jax.tree_util.GetAttrKey("w"), t.a), (jax.tree_util.GetAttrKey("w"), t.b)), None),
    lambda _, children: _Twin(*children),
)


def test_ambiguous_paths_are_refused():
    tree = {"t": _Twin(np.zeros(2), np.ones(2))}
    for fn in (leaf_paths, full_hash, leaf_hashes, device_fingerprints):
        with pytest.raises(ValueError, match="t/w"):
            fn(tree)
