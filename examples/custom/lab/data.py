"""A custom data source factory: `(seed, **args)` -> an object with
`train_batch(step)` and `eval_batches()`; a factory that takes `batch_size`
receives the spec's `data.batch_size`.

`train_batch(step)` must be a pure function of (seed, step): a resumed run asks
for the batch of its next step and must get what an uninterrupted run got.
"""

import numpy as np


class Sines:
    def __init__(self, seed: int, samples: int, noise: float, batch_size: int = 64):
        rng = np.random.default_rng(seed)
        self.x = rng.uniform(-2, 2, size=(samples, 1)).astype(np.float32)
        self.y = (np.sin(3 * self.x[:, 0]) + noise * rng.normal(size=samples)).astype(np.float32)
        self.seed, self.batch_size = seed, batch_size
        self.eval_x = np.linspace(-2, 2, 256, dtype=np.float32)[:, None]
        self.eval_y = np.sin(3 * self.eval_x[:, 0]).astype(np.float32)

    def train_batch(self, step: int) -> dict[str, np.ndarray]:
        rows = np.random.default_rng([self.seed, step]).integers(0, len(self.x), self.batch_size)
        return {"x": self.x[rows], "y": self.y[rows]}

    def eval_batches(self) -> list[dict[str, np.ndarray]]:
        return [{"x": self.eval_x[i : i + 64], "y": self.eval_y[i : i + 64]} for i in range(0, 256, 64)]


def make_sines(seed: int, batch_size: int, samples: int = 1024, noise: float = 0.1) -> Sines:
    """`batch_size` is the spec's `data.batch_size` (passed when a factory asks for it)."""
    return Sines(seed, samples, noise, batch_size)
