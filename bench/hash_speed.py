"""P4: throughput of the full canonical parameter hash against a plain host memory copy.

Both read the same ~100 MB of float32 leaves in this process, alternating; the
copy writes into buffers allocated beforehand, so it measures bandwidth only.
"""

from __future__ import annotations

import time

import numpy as np
from common import Row, at_least, median

LEAVES, LEAF_ELEMENTS = 8, 3_200_000


def measure(repeats: int) -> list[Row]:
    from expspec.runtime.engine.hashing import full_hash

    rng = np.random.default_rng(0)
    tree = {f"layer{i}": rng.standard_normal(LEAF_ELEMENTS, dtype=np.float32) for i in range(LEAVES)}
    targets = {name: np.empty_like(a) for name, a in tree.items()}
    nbytes = sum(a.nbytes for a in tree.values())
    hash_s, copy_s = [], []
    for _ in range(repeats + 1):  # the first round faults the pages in
        start = time.perf_counter()
        full_hash(tree)
        hash_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        for name, a in tree.items():
            np.copyto(targets[name], a)
        copy_s.append(time.perf_counter() - start)
    h, c = nbytes / median(hash_s[1:]), nbytes / median(copy_s[1:])
    target, met = at_least(h / c, 1.0)
    return [Row("P4", "full hash throughput vs memory copy", h, c, "bytes/s", h / c, target, met, {"bytes": nbytes})]
