"""Hashes that prove a run is bitwise reproducible.

Two kinds: a full canonical xxh3-128 over every byte of a pytree, computed on
the host at checkpoints and after a restore, and a cheap per-step device
fingerprint that can live inside the jitted train step. Both walk the leaves in
the same canonical order (sorted path strings), so they can be compared leaf by
leaf and do not depend on dict insertion order or on how Orbax restored lists.
Fingerprints cover element bits and order only; paths, dtypes and shapes are
static within a compiled step and are covered by the full hash.
"""

from __future__ import annotations

import struct
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xxhash
from jax import lax
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

__all__ = [
    "canonical_leaves",
    "combine_fingerprints",
    "device_fingerprints",
    "full_hash",
    "is_key",
    "leaf_hashes",
    "leaf_paths",
]

_MAGIC = b"expspec.hash.v1\0"


def _segment(entry: Any) -> str:
    # A list index 3 and a dict key "3" are the same segment: Orbax restores
    # lists as dicts with string keys and the hash must survive that.
    if isinstance(entry, DictKey):
        raw = entry.key
    elif isinstance(entry, SequenceKey):
        raw = entry.idx
    elif isinstance(entry, GetAttrKey):
        raw = entry.name
    elif isinstance(entry, FlattenedIndexKey):
        raw = entry.key
    else:
        raw = entry
    # Escape the separator so {"a/b": x} and {"a": {"b": x}} cannot collide.
    return str(raw).replace("%", "%25").replace("/", "%2F")


def _sorted_leaves(tree: Any) -> list[tuple[str, Any]]:
    # Pure Python over the tree structure, so under jit it runs at trace time.
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    items = [("/".join(_segment(e) for e in path), leaf) for path, leaf in flat]
    items.sort(key=lambda item: item[0])  # key-only: never compares arrays
    for (a, _), (b, _) in zip(items, items[1:]):
        if a == b:
            raise ValueError(f"two leaves share the canonical path {a!r}; their hashes would be ambiguous")
    return items


def canonical_leaves(tree: Any) -> list[tuple[str, Any]]:
    """(canonical path, leaf) pairs in the order every function here uses."""
    return _sorted_leaves(tree)


def leaf_paths(tree: Any) -> list[str]:
    """Canonical leaf paths, in the order every other function here uses."""
    return [path for path, _ in _sorted_leaves(tree)]


def is_key(x: Any) -> bool:
    """Whether `x` is an array of typed PRNG keys: hashed and compared by their key data."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _frame(h: Any, data: bytes | np.ndarray) -> None:
    # Length prefix on every field: no two different trees share a byte stream.
    h.update(struct.pack("<Q", data.nbytes if isinstance(data, np.ndarray) else len(data)))
    h.update(data)


def _feed_leaf(h: Any, path: str, leaf: Any) -> None:
    if is_key(leaf):
        # Typed keys have no bytes of their own; the impl name keeps a
        # threefry key distinct from an rbg key (or a raw uint32 array).
        dtype = f"key<{jax.random.key_impl(leaf)}>"
        leaf = jax.random.key_data(leaf)
    else:
        dtype = ""
    a = np.asarray(jax.device_get(leaf))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    dtype += a.dtype.name
    _frame(h, path.encode())
    _frame(h, dtype.encode())
    _frame(h, struct.pack(f"<{a.ndim}Q", *a.shape))
    # A zero-copy byte view: tobytes() copies (~9x slower), .data rejects bfloat16.
    _frame(h, np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def full_hash(tree: Any) -> str:
    """xxh3-128 of the whole tree; equal iff paths, dtypes, shapes and bytes are."""
    items = _sorted_leaves(tree)
    h = xxhash.xxh3_128()
    h.update(_MAGIC + struct.pack("<Q", len(items)))
    for path, leaf in items:
        _feed_leaf(h, path, leaf)
    return h.hexdigest()


def leaf_hashes(tree: Any) -> dict[str, str]:
    """Per-leaf hashes, so a mismatch after a restore names the leaf that differs."""
    out = {}
    for path, leaf in _sorted_leaves(tree):
        h = xxhash.xxh3_128()
        h.update(_MAGIC)
        _feed_leaf(h, path, leaf)
        out[path] = h.hexdigest()
    return out


def _u32(x: int) -> np.uint32:
    return np.uint32(x)


def _fmix32(h: jax.Array) -> jax.Array:
    # murmur3 finaliser: a bijection on uint32 with full avalanche.
    h = h ^ lax.shift_right_logical(h, _u32(16))
    h = h * _u32(0x85EBCA6B)
    h = h ^ lax.shift_right_logical(h, _u32(13))
    h = h * _u32(0xC2B2AE35)
    return h ^ lax.shift_right_logical(h, _u32(16))


def _lowbias32(h: jax.Array) -> jax.Array:
    # A second, independent bijective mixer (Wellons' lowbias32) for lane 2.
    h = h ^ lax.shift_right_logical(h, _u32(16))
    h = h * _u32(0x7FEB352D)
    h = h ^ lax.shift_right_logical(h, _u32(15))
    h = h * _u32(0x846CA68B)
    return h ^ lax.shift_right_logical(h, _u32(16))


def _words(x: Any) -> jax.Array:
    # The leaf's bit patterns as a flat uint32 vector, never its values:
    # -0.0 vs 0.0 and distinct NaN payloads must all be told apart.
    if is_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, np.ndarray | np.generic) and jax.dtypes.canonicalize_dtype(x.dtype) != x.dtype:
        # Without x64, JAX would silently round a float64 host array to float32
        # and the fingerprint would miss changes in the dropped bits.
        raise TypeError(f"{x.dtype} leaf would be narrowed on device; enable jax_enable_x64 or use full_hash")
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    bits = jax.dtypes.itemsize_bits(x.dtype)
    if x.dtype == jnp.bool_:
        w = x.astype(jnp.uint32)
    elif bits in (8, 16):
        w = lax.bitcast_convert_type(x, jnp.uint8 if bits == 8 else jnp.uint16).astype(jnp.uint32)
    elif bits in (32, 64):
        w = lax.bitcast_convert_type(x, jnp.uint32)  # 64-bit gains a trailing axis of 2 words
    else:
        raise TypeError(f"no device fingerprint for {bits}-bit dtype {x.dtype}")
    return w.reshape(-1)


def _leaf_fingerprint(x: Any) -> jax.Array:
    w = _words(x)
    i = lax.iota(jnp.uint32, w.shape[0])
    # Each term depends on (value, index) only, and wrap-around uint32 addition
    # is associative and commutative: XLA's reduction order cannot matter.
    a = _fmix32(w ^ (i * _u32(0x9E3779B9)) ^ _u32(0x2545F491))
    b = _lowbias32((w * _u32(0x27D4EB2F)) ^ (i * _u32(0x85EBCA77) + _u32(0x165667B1)))
    # Both lanes in one variadic reduce: one pass over the words instead of two.
    # XLA:CPU does not vectorise integer reductions, so the pass count is the cost
    # (a quarter of the digits step with two passes, measured).
    sums = lax.reduce((a, b), (_u32(0), _u32(0)), lambda x, y: (x[0] + y[0], x[1] + y[1]), (0,))
    return jnp.stack(sums)


def device_fingerprints(tree: Any) -> jax.Array:
    """Per-leaf 64-bit fingerprints, exact on any backend, cheap enough for every step.

    Pure and traceable: the leaf order is fixed from the tree structure at trace
    time, so calling it inside a jitted step adds no retracing.
    """
    fps = [_leaf_fingerprint(leaf) for _, leaf in _sorted_leaves(tree)]
    return jnp.stack(fps) if fps else jnp.zeros((0, 2), jnp.uint32)


def combine_fingerprints(fps: Any) -> str:
    """One comparable string per step, folded on the host so it is backend-free."""
    a = np.asarray(jax.device_get(fps))
    if a.dtype.kind != "u" or a.dtype.itemsize != 4 or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"expected a uint32 [L, 2] array, got {a.dtype} {a.shape}")
    h = xxhash.xxh3_64()
    h.update(_MAGIC + struct.pack("<Q", a.shape[0]))
    h.update(np.ascontiguousarray(a, dtype="<u4").reshape(-1).view(np.uint8))
    return h.hexdigest()
