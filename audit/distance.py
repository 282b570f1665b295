"""How far apart two states are, leaf by leaf.

A hash mismatch says only that two states differ. To tell a reduction-order
wobble (a few elements, one or two ulp) from a real divergence (everything,
far apart) the audit needs a size for the difference, measured on the bits:
-0.0 vs 0.0 and distinct NaN payloads count as differing, exactly as the hash
sees them. Leaves are paired by the same canonical paths the hash uses, so a
state restored without a target lines up with the one that was saved.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jax
import ml_dtypes
import numpy as np

from expspec.runtime.engine.hashing import canonical_leaves, is_key

__all__ = ["LeafDistance", "describe", "leaf_distances", "ulp_distance"]

# Float dtypes whose bits are sign-magnitude with the sign in the top bit.
_FLOAT_BITS = {
    np.dtype(np.float16): np.uint16,
    np.dtype(ml_dtypes.bfloat16): np.uint16,
    np.dtype(np.float32): np.uint32,
    np.dtype(np.float64): np.uint64,
}


@dataclass(frozen=True)
class LeafDistance:
    """One differing leaf. `differing == -1` marks a structure mismatch (the
    leaf is missing on one side, or its dtype or shape differ), described in
    `mismatch`; `max_ulp == -1` alone means ulp is undefined for the dtype."""

    path: str
    dtype: str
    shape: tuple[int, ...]
    differing: int
    max_abs: float
    max_ulp: int
    first_index: tuple[int, ...] | None
    mismatch: str | None = None


def _native(x: Any) -> np.ndarray:
    if is_key(x):
        x = jax.random.key_data(x)
    a = np.asarray(jax.device_get(x))
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _magnitudes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uint = _FLOAT_BITS[x.dtype]
    bits = x.view(uint)  # same itemsize: a view at any layout, keeping 0-d shape
    sign_bit = uint(1) << uint(8 * x.dtype.itemsize - 1)
    return (bits & sign_bit) != 0, (bits & ~sign_bit).astype(np.uint64)


def _abs_diff_u64(a: np.ndarray, b: np.ndarray, a_ge_b: np.ndarray) -> np.ndarray:
    # Wrapping uint64 subtraction is exact whenever the true result is in
    # [0, 2**64), which choosing the larger operand guarantees.
    with np.errstate(over="ignore"):
        return np.where(a_ge_b, a - b, b - a)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise count of representable values between `a` and `b`, as uint64.

    uint64 because neither a float64 ulp count (up to ~2**64 across zero) nor an
    int64/uint64 difference fits in int64. Floats are measured on their bits in
    sign-magnitude order, so -0.0 and +0.0 are 0 apart, -x and +x are
    2 * |x|'s position apart, and NaNs sort beyond the infinities.
    """
    a, b = _native(a), _native(b)
    if a.dtype != b.dtype:
        raise TypeError(f"ulp distance between different dtypes {a.dtype} and {b.dtype}")
    if a.dtype in _FLOAT_BITS:
        neg_a, mag_a = _magnitudes(a)
        neg_b, mag_b = _magnitudes(b)
        # Opposite signs: the distance crosses zero. Magnitudes are below 2**63, so the sum fits.
        return np.where(neg_a == neg_b, _abs_diff_u64(mag_a, mag_b, mag_a >= mag_b), mag_a + mag_b)
    if a.dtype.kind == "i":
        wide_a, wide_b = a.astype(np.int64).view(np.uint64), b.astype(np.int64).view(np.uint64)
        return _abs_diff_u64(wide_a, wide_b, a >= b)
    if a.dtype.kind in "ub":
        return _abs_diff_u64(a.astype(np.uint64), b.astype(np.uint64), a >= b)
    raise TypeError(f"no ulp distance for dtype {a.dtype}")


def _bits(x: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(x).reshape(-1)
    if x.dtype.itemsize in (1, 2, 4, 8):
        return flat.view(f"u{x.dtype.itemsize}")
    return flat.view(np.uint8).reshape(flat.size, x.dtype.itemsize)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype.kind == "c":
        x, y = a.astype(np.complex128), b.astype(np.complex128)
    else:
        x, y = a.astype(np.float64), b.astype(np.float64)
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    if np.any(nan_x != nan_y):
        return math.inf
    with np.errstate(invalid="ignore", over="ignore"):
        delta = np.abs(x - y)
    # Both NaN (payloads differ) counts as no numeric distance.
    delta = np.where(nan_x & nan_y, 0.0, delta)
    return float(delta.max()) if delta.size else 0.0


def _compare(path: str, a: np.ndarray, b: np.ndarray) -> LeafDistance | None:
    bits_a, bits_b = _bits(a), _bits(b)
    mask = bits_a != bits_b
    if mask.ndim == 2:
        mask = mask.any(axis=1)
    positions = np.flatnonzero(mask)
    if positions.size == 0:
        return None
    da, db = a.reshape(-1)[positions], b.reshape(-1)[positions]
    try:
        max_ulp = int(ulp_distance(da, db).max())
    except TypeError:
        max_ulp = -1
    first = tuple(int(i) for i in np.unravel_index(int(positions[0]), a.shape))
    return LeafDistance(
        path=path,
        dtype=a.dtype.name,
        shape=tuple(a.shape),
        differing=int(positions.size),
        max_abs=_max_abs(da, db),
        max_ulp=max_ulp,
        first_index=first,
    )


def _mismatch(path: str, a: np.ndarray | None, b: np.ndarray | None) -> LeafDistance:
    if a is None or b is None:
        present = a if a is not None else b
        assert present is not None
        note = "only in the first tree" if b is None else "only in the second tree"
    else:
        present = a
        note = f"{a.dtype.name}[{_dims(a.shape)}] vs {b.dtype.name}[{_dims(b.shape)}]"
    return LeafDistance(
        path=path,
        dtype=present.dtype.name,
        shape=tuple(present.shape),
        differing=-1,
        max_abs=math.inf,
        max_ulp=-1,
        first_index=None,
        mismatch=note,
    )


def _selected(path: str, only: frozenset[str] | None) -> bool:
    # A listed path selects that leaf or, as a prefix, the whole subtree under it.
    if only is None:
        return True
    parts = path.split("/")
    return any("/".join(parts[:n]) in only for n in range(1, len(parts) + 1))


def leaf_distances(a_tree: Any, b_tree: Any, only: Collection[str] | None = None) -> list[LeafDistance]:
    """Every leaf where the two trees differ, in canonical path order; [] iff bitwise equal.

    `only` restricts the walk to those canonical paths (or subtrees: "params"
    selects every leaf under params/).
    """
    selection = None if only is None else frozenset(p.strip("/") for p in only)
    a_leaves = {p: _native(x) for p, x in canonical_leaves(a_tree) if _selected(p, selection)}
    b_leaves = {p: _native(x) for p, x in canonical_leaves(b_tree) if _selected(p, selection)}
    out = []
    for path in sorted(a_leaves.keys() | b_leaves.keys()):
        a, b = a_leaves.get(path), b_leaves.get(path)
        if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
            out.append(_mismatch(path, a, b))
        elif (found := _compare(path, a, b)) is not None:
            out.append(found)
    return out


def _dims(shape: tuple[int, ...]) -> str:
    return ",".join(str(n) for n in shape)


def describe(d: LeafDistance) -> str:
    """One report line a reader can act on: which leaf, how much of it, how far."""
    head = f"{d.path} {d.dtype}[{_dims(d.shape)}]"
    if d.differing < 0:
        return f"{head}: structure differs, {d.mismatch or 'not comparable'}"
    total = math.prod(d.shape)
    ulp = f"max {d.max_ulp} ulp" if d.max_ulp >= 0 else "ulp n/a"
    first = f", first at {d.first_index}" if d.first_index is not None else ""
    return f"{head}: {d.differing} of {total} elements differ, max |Δ| {d.max_abs:.3g}, {ulp}{first}"
