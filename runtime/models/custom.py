"""The `custom` family: a user factory `(rngs, **args) -> nnx.Module`, imported only when allowed."""

from __future__ import annotations

import inspect

import jax
from flax import nnx

from expspec.runtime.models.common import BuildContext, ModelError
from expspec.runtime.types import DataInfo

from ...spec.model import CustomModel
from ...spec.targets import import_target

__all__ = ["CustomAdapter", "build_custom"]


def _takes_train_and_key(module: nnx.Module) -> bool:
    try:
        params = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    by_keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return all(name in params and params[name].kind in by_keyword for name in ("train", "key"))


class CustomAdapter(nnx.Module):
    """Gives a user module the runtime's calling convention `(x, *, train, key)`.

    A module that does not take `train`/`key` is called as `inner(x)`; it then
    has no dropout the runtime can drive (or drives its own).
    """

    def __init__(self, inner: nnx.Module) -> None:
        self.inner = inner
        self.forwards_train_key = _takes_train_and_key(inner)

    def __call__(self, x: jax.Array, *, train: bool = False, key: jax.Array | None = None) -> jax.Array:
        if self.forwards_train_key:
            return self.inner(x, train=train, key=key)
        return self.inner(x)


def build_custom(spec: CustomModel, info: DataInfo, ctx: BuildContext) -> CustomAdapter:
    """Import the factory (refusal propagates as `ImportNotAllowed`) and call it."""
    factory = import_target(spec.target, ctx.allow_imports, ctx.search)
    if not callable(factory):
        raise ModelError(f"model.target '{spec.target}' is not callable")
    inner = factory(nnx.Rngs(params=ctx.init_seed, dropout=ctx.init_seed), **spec.args)
    if not isinstance(inner, nnx.Module):
        raise ModelError(f"model.target '{spec.target}' returned {type(inner).__name__}, not an nnx.Module")
    return CustomAdapter(inner)
