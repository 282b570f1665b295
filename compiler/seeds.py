"""The seed tree: one integer per named stream, derived from the root seed by name.

Streams are derived by hashing (root seed, stream name), never by the order in
which consumers ask, so adding a stream changes no other stream, and pinning one
(`[seeds] data.shuffle = 1234`) changes that stream alone.
"""

from __future__ import annotations

import hashlib

from expspec.spec import Experiment, stream_names

__all__ = ["SEED_BITS", "derive_seed", "derive_seeds"]

SEED_BITS = 31
"""Derived seeds fit in a non-negative int32, which every JAX backend accepts."""


def derive_seed(root: int, stream: str) -> int:
    """The seed of `stream` under `root` (BLAKE2b of both, truncated)."""
    message = f"expspec.seed.v1\x00{root}\x00{stream}".encode()
    value = int.from_bytes(hashlib.blake2b(message, digest_size=8).digest(), "little")
    return value & ((1 << SEED_BITS) - 1)


def derive_seeds(experiment: Experiment) -> dict[str, int]:
    """Every stream of `experiment` -> its seed, pinned streams taking their pinned value."""
    return {name: experiment.seeds.get(name, derive_seed(experiment.seed, name)) for name in stream_names(experiment)}
