"""Builders by `kind`: one registry shape for models, data, and whatever comes next.

A spec section is a discriminated union tagged by `kind`; the runtime turns it
into an object through the builder registered under that tag. Builders may be
named as `"module:function"` so that a kind's imports (scikit-learn for the
digits, the user's module for `custom`) happen only when that kind is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["Registry"]

B = TypeVar("B", bound=Callable[..., object])


class Registry(Mapping[str, B], Generic[B]):
    """`kind` -> builder; reading an unknown kind raises `error`, naming the known ones."""

    def __init__(
        self, what: str, error: Callable[[str], Exception], builders: Mapping[str, B | str] | None = None
    ) -> None:
        self.what = what
        """The spec key the kinds are values of, for messages (`model.kind`)."""
        self._error = error
        self._builders: dict[str, B | str] = {}
        for kind, builder in (builders or {}).items():
            self.register(kind, builder)

    def register(self, kind: str, builder: B | str) -> None:
        """Add `kind`; `builder` is a callable or `"module:function"`, imported on first use."""
        if kind in self._builders:
            raise ValueError(f"{self.what} '{kind}' is registered already")
        self._builders[kind] = builder

    def __getitem__(self, kind: str) -> B:
        try:
            builder = self._builders[kind]
        except KeyError:
            raise self._error(f"unknown {self.what} '{kind}'; known: {sorted(self._builders)}") from None
        if isinstance(builder, str):
            module, _, name = builder.partition(":")
            builder = self._builders[kind] = getattr(importlib.import_module(module), name)
        return builder

    def __contains__(self, kind: object) -> bool:
        return kind in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)
