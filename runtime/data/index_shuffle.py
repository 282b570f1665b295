"""Shuffled example order at any corpus size, without a permutation in memory.

A keyed Feistel network over the smallest power-of-two domain that covers the
corpus, walked back into range (cycle-walking), is a bijection of [0, size)
that maps any single index in O(1). Epoch `e` of a seed is the bijection keyed
by a hash of (seed, "epoch", e), so example `i` of any epoch, and therefore the
batch at any step, is computed directly: resuming replays nothing and epoch
boundaries cost nothing, whether the corpus has a thousand examples or 10**12.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable

import numpy as np
import xxhash

__all__ = ["EpochOrder", "IndexShuffle", "stream_key"]

_U64 = 1 << 64
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment: spreads successive round indices
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)

DEFAULT_ROUNDS = 8
"""Feistel rounds; each alternately rewrites one half, so 8 rewrite each half 4 times."""


def stream_key(seed: int, *labels: str | int) -> int:
    """A 64-bit key for a named sub-stream of `seed`, such as (seed, "epoch", 3).

    The key is xxh3_64 of a canonical, typed encoding of (seed, *labels), so
    distinct tuples never share an encoding. Keys are never `seed + epoch`
    (grain's scheme), under which seed 7's epoch 1 is seed 8's epoch 0.
    """
    parts = [_checked_label(seed, "seed"), *(_checked_label(label, "label") for label in labels)]
    encoded = json.dumps(["expspec.stream", *parts], separators=(",", ":"), ensure_ascii=True)
    return xxhash.xxh3_64_intdigest(encoded.encode("ascii"))


def _checked_label(value: object, what: str) -> int | str:
    # bool is an int subclass; refusing it keeps True and 1 from meaning one stream.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"stream_key: {what} must be an int or a str, got {type(value).__name__}")
    return value


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a 64-bit bijection whose every output bit depends on every input bit."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _integer_array(index: np.ndarray | int, what: str) -> np.ndarray:
    array = np.asarray(index)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got dtype {array.dtype}")
    return array


class IndexShuffle:
    """A keyed bijection of [0, size), computed per index in O(1) time and memory.

    A Feistel network over [0, 2**bits) (bits the fewest with 2**bits >= size)
    splits each index into a high and a low half, unequal when bits is odd, and
    each round rewrites one half with a keyed mix of the other; indices that land
    at or past `size` are mapped again until they come back into range (at most
    twice on average, since 2**bits < 2 * size). So no permutation array of the
    corpus ever exists in memory.
    """

    def __init__(self, size: int, key: int, rounds: int = DEFAULT_ROUNDS) -> None:
        size, key, rounds = operator.index(size), operator.index(key), operator.index(rounds)
        if not 1 <= size < 1 << 63:
            raise ValueError(f"size must be in [1, 2**63), got {size}")
        if not 0 <= key < _U64:
            raise ValueError(f"key must be a 64-bit unsigned integer, got {key}")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        self.size, self.key, self.rounds = size, key, rounds
        bits = (size - 1).bit_length()
        high_bits = bits // 2
        self._low_bits = np.uint64(bits - high_bits)
        self._high_mask = np.uint64((1 << high_bits) - 1)
        self._low_mask = np.uint64((1 << (bits - high_bits)) - 1)
        counters = np.array([(key + (r + 1) * _GOLDEN) % _U64 for r in range(rounds)], dtype=np.uint64)
        self._round_keys = _mix64(counters)

    def __call__(self, index: np.ndarray | int) -> np.ndarray:
        """The shuffled position of each index (int64, same shape)."""
        array = self._checked(index)
        return self._walk(array.reshape(-1), self._forward).reshape(array.shape)

    def inverse(self, index: np.ndarray | int) -> np.ndarray:
        """The index each shuffled position came from: `inverse(self(i)) == i`."""
        array = self._checked(index)
        return self._walk(array.reshape(-1), self._backward).reshape(array.shape)

    def __repr__(self) -> str:
        return f"IndexShuffle(size={self.size}, key={self.key:#018x}, rounds={self.rounds})"

    def _checked(self, index: np.ndarray | int) -> np.ndarray:
        array = _integer_array(index, "indices")
        if array.size and (array.min() < 0 or array.max() >= self.size):
            raise ValueError(f"indices must be in [0, {self.size}), got values in [{array.min()}, {array.max()}]")
        return array.astype(np.uint64)

    def _walk(self, x: np.ndarray, step: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        # Cycle-walking: a bijection of the power-of-two domain, applied again to
        # the (shrinking) subset still out of range, is a bijection of [0, size).
        # `x` is one-dimensional so every operation stays on arrays (no scalars).
        out = step(x)
        size = np.uint64(self.size)
        outside = np.flatnonzero(out >= size)
        while outside.size:
            again = step(out[outside])
            out[outside] = again
            outside = outside[again >= size]
        return out.astype(np.int64)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        high, low = x >> self._low_bits, x & self._low_mask
        for r, round_key in enumerate(self._round_keys):
            if r % 2 == 0:
                high = high ^ (_mix64(low ^ round_key) & self._high_mask)
            else:
                low = low ^ (_mix64(high ^ round_key) & self._low_mask)
        return (high << self._low_bits) | low

    def _backward(self, x: np.ndarray) -> np.ndarray:
        high, low = x >> self._low_bits, x & self._low_mask
        for r in reversed(range(self.rounds)):
            round_key = self._round_keys[r]
            if r % 2 == 0:
                high = high ^ (_mix64(low ^ round_key) & self._high_mask)
            else:
                low = low ^ (_mix64(high ^ round_key) & self._low_mask)
        return (high << self._low_bits) | low


class EpochOrder:
    """Example ids for the positions of an endless stream of epochs over `size` examples.

    Position g lies in epoch g // size and is example
    `IndexShuffle(size, stream_key(seed, "epoch", epoch))(g % size)`. Batches are
    consecutive positions, so a batch may straddle an epoch boundary, and no
    example is ever dropped or repeated within an epoch, whatever the batch size.
    """

    def __init__(self, size: int, seed: int) -> None:
        size, seed = operator.index(size), operator.index(seed)
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self.seed = size, seed
        # The last two epochs' shuffles: a batch touches at most two unless it
        # is longer than an epoch. Replaced whole, never mutated, so one read is
        # consistent even if another thread (a prefetcher) asks at the same time.
        self._recent: tuple[tuple[int, IndexShuffle], ...] = ()

    def epoch_shuffle(self, epoch: int) -> IndexShuffle:
        """The bijection that orders epoch `epoch`."""
        recent = self._recent
        for cached_epoch, shuffle in recent:
            if cached_epoch == epoch:
                return shuffle
        shuffle = IndexShuffle(self.size, stream_key(self.seed, "epoch", epoch))
        self._recent = ((epoch, shuffle), *recent[:1])
        return shuffle

    def examples(self, positions: np.ndarray | int) -> np.ndarray:
        """The example id (int64, same shape) at each stream position (>= 0)."""
        array = _integer_array(positions, "positions")
        if array.size and (array.min() < 0 or array.max() >= 1 << 63):
            raise ValueError(f"positions must be in [0, 2**63), got values in [{array.min()}, {array.max()}]")
        array = array.astype(np.int64)
        epochs, within = np.divmod(array, self.size)
        out = np.empty(array.shape, dtype=np.int64)
        for epoch in np.unique(epochs):
            chosen = epochs == epoch
            out[chosen] = self.epoch_shuffle(int(epoch))(within[chosen])
        return out

    def batch(self, step: int, batch_size: int) -> np.ndarray:
        """Example ids of positions step * batch_size ... (step + 1) * batch_size - 1."""
        step, batch_size = operator.index(step), operator.index(batch_size)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if (step + 1) * batch_size > 1 << 63:
            raise ValueError(f"step {step} with batch size {batch_size} is past the last position")
        return self.examples(np.arange(batch_size, dtype=np.int64) + step * batch_size)
