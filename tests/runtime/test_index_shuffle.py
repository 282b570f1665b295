"""The keyed index shuffle: a bijection at any size, keyed by hashed streams, well spread."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from expspec.runtime.data.index_shuffle import EpochOrder, IndexShuffle, stream_key

SIZES = [*range(1, 301), 1000, 1023, 1024, 1025, 4097, 65537]


@pytest.mark.parametrize("key", [0, 1, 2**64 - 1, stream_key(3, "epoch", 0)])
def test_every_size_is_a_bijection_and_inverse_undoes_it(key):
    for size in SIZES:
        shuffle = IndexShuffle(size, key)
        every = np.arange(size)
        out = shuffle(every)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(np.sort(out), every, err_msg=f"size {size}")
        np.testing.assert_array_equal(shuffle.inverse(out), every, err_msg=f"size {size}")


def test_any_shape_and_scalars_keep_their_shape():
    shuffle = IndexShuffle(77, 5)
    grid = np.arange(77).reshape(7, 11)
    np.testing.assert_array_equal(shuffle(grid).ravel(), shuffle(grid.ravel()))
    assert shuffle(np.int64(3)).shape == ()
    assert int(shuffle(3)) == int(shuffle(np.array([3]))[0])
    assert shuffle(np.array([], dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize("bad", [[-1], [10], [0, 3, 10]])
def test_out_of_range_indices_are_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        IndexShuffle(10, 1)(np.array(bad))
    with pytest.raises(ValueError):
        IndexShuffle(10, 1).inverse(np.array(bad))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        IndexShuffle(0, 1)
    with pytest.raises(ValueError):
        IndexShuffle(10, -1)
    with pytest.raises(ValueError):
        IndexShuffle(10, 2**64)
    with pytest.raises(TypeError):
        IndexShuffle(10, 1)(np.array([1.0]))


def test_a_huge_corpus_needs_no_memory_of_its_size():
    size = 10**12
    shuffle = IndexShuffle(size, stream_key(1, "epoch", 0))
    indices = np.array([0, 1, 2, size // 2, size - 1])
    start = time.perf_counter()
    out = shuffle(indices)
    assert time.perf_counter() - start < 0.5  # O(1) per index: no array of 10**12 anything
    assert ((out >= 0) & (out < size)).all() and len(set(out.tolist())) == len(indices)
    np.testing.assert_array_equal(shuffle.inverse(out), indices)


def test_two_keys_give_different_orders():
    every = np.arange(1000)
    orders = {tuple(IndexShuffle(1000, key)(every)) for key in range(20)}
    assert len(orders) == 20


def test_the_order_is_spread_over_the_whole_range():
    # A uniformly random permutation moves an index by size/3 on average; the
    # identity (0), a rotation by k or a reversal (size/2) would fail.
    size = 10_000
    every = np.arange(size)
    for seed in range(3):
        out = IndexShuffle(size, stream_key(seed, "epoch", 0))(every)
        assert abs(np.abs(out - every).mean() / size - 1 / 3) < 0.02
        # Neighbours are not kept together: successive outputs are far apart too.
        assert abs(np.abs(np.diff(out)).mean() / size - 1 / 3) < 0.02


def test_stream_keys_never_alias_seed_plus_epoch():
    # grain's seed + epoch makes seed 7's epoch 1 seed 8's epoch 0.
    assert stream_key(7, "epoch", 1) != stream_key(8, "epoch", 0)
    seed7_epoch1 = EpochOrder(500, 7).examples(np.arange(500, 1000))
    seed8_epoch0 = EpochOrder(500, 8).examples(np.arange(500))
    assert not np.array_equal(seed7_epoch1, seed8_epoch0)
    keys = {stream_key(seed, "epoch", epoch) for seed in range(40) for epoch in range(40)}
    assert len(keys) == 1600


def test_stream_keys_are_typed_and_stable():
    assert stream_key(1, "epoch", 1) != stream_key(1, "epoch", "1")
    assert stream_key(1, "a", "b") != stream_key(1, "ab")
    assert stream_key(1, "epoch", 2) == stream_key(1, "epoch", 2)
    assert 0 <= stream_key(2**70, "x") < 2**64
    with pytest.raises(TypeError):
        stream_key(1, True)
    with pytest.raises(TypeError):
        stream_key(1, 1.5)


def test_epochs_with_an_odd_batch_see_each_example_once_per_epoch():
    size, batch_size, epochs = 1000, 7, 7  # 7 epochs = 1000 batches exactly; batches straddle epochs
    order = EpochOrder(size, seed=11)
    seen = np.concatenate([order.batch(step, batch_size) for step in range(epochs * size // batch_size)])
    assert len(seen) == epochs * size
    for epoch in range(epochs):
        assert Counter(seen[epoch * size : (epoch + 1) * size].tolist()) == Counter(range(size))
    first, second = seen[:size], seen[size : 2 * size]
    assert not np.array_equal(first, second)  # each epoch reshuffles
    other_seed = np.concatenate([EpochOrder(size, seed=12).batch(s, batch_size) for s in range(size // batch_size)])
    assert not np.array_equal(first[: len(other_seed)], other_seed)


def test_epoch_order_is_a_pure_function_of_the_position():
    order = EpochOrder(97, seed=3)
    positions = np.array([5000, 3, 96, 97, 194, 3])
    fresh = EpochOrder(97, seed=3)
    np.testing.assert_array_equal(order.examples(positions), fresh.examples(positions[::-1])[::-1])
    np.testing.assert_array_equal(order.batch(714, 7), fresh.examples(np.arange(714 * 7, 715 * 7)))
    assert order.examples(positions)[1] == order.examples(positions)[5]
    # A batch longer than the corpus spans several whole epochs.
    np.testing.assert_array_equal(np.sort(EpochOrder(3, seed=1).batch(0, 9)), np.repeat(np.arange(3), 3))
    with pytest.raises(ValueError):
        order.examples(np.array([-1]))
    with pytest.raises(ValueError):
        order.batch(-1, 7)
    with pytest.raises(ValueError):
        order.batch(0, 0)
