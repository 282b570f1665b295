"""A custom model factory: `(rngs, **args) -> nnx.Module`.

The module is called `model(x, train=..., key=...)` when its `__call__` takes
those keywords (dropout then draws from `key`), else `model(x)`.
"""

import jax
from flax import nnx


class Regressor(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(1, width, rngs=rngs)
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jax.nn.tanh(self.hidden(x)))[:, 0]


def make_regressor(rngs: nnx.Rngs, width: int = 32) -> nnx.Module:
    return Regressor(width, rngs)
