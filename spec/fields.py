"""Field classes: every spec field says whether it changes the math.

A *trajectory* field changes the numbers a run computes (model, data,
optimizer, seeds, precision); an *operational* field changes only how the run
is carried out (logging, cadence, throttle, paths, display). The class lives on
the Pydantic field itself so the compiler derives the trajectory fingerprint
from metadata, and `exp plan --explain` and `exp diff` show the same labels.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from .docstrings import attribute_docstrings

__all__ = [
    "CLASS_KEY",
    "PATH_KEY",
    "FieldClass",
    "SpecModel",
    "field_class",
    "is_path_field",
    "operational",
    "trajectory",
]

FieldClass = Literal["trajectory", "operational"]

CLASS_KEY = "x-exp-class"
"""JSON Schema key under which a field's class is published."""

PATH_KEY = "x-exp-path"
"""JSON Schema key marking fields that hold a filesystem path (relative paths
resolve against the folder of the spec file that wrote them)."""


class SpecModel(BaseModel):
    """Base of every spec section: frozen, strict, closed, documented.

    Strict mode keeps TOML's types honest (`"0.1"` is not a number, `true` is
    not an integer); NaN and infinities are refused because they can never be
    part of a reproducible experiment.

    Validators are built on first use (`defer_build`): `exp plan` needs only
    `Experiment`'s, which covers every section, instead of one per class at
    import. The docstring under each field becomes its description, as with
    `use_attribute_docstrings`, but read by `attribute_docstrings` (faster).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        validate_default=False,
        defer_build=True,
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Runs once the fields exist and, the build being deferred, before any
        # schema is built: the descriptions reach the JSON Schema.
        super().__pydantic_init_subclass__(**kwargs)
        docs = attribute_docstrings(cls.__module__).get(cls.__qualname__, {})
        for name, info in cls.model_fields.items():
            if info.description is None and name in docs:
                info.description = docs[name]


def _field(cls: FieldClass, default: Any, path: bool, kwargs: dict[str, Any]) -> Any:
    extra: dict[str, Any] = {CLASS_KEY: cls}
    if path:
        extra[PATH_KEY] = True
    return Field(default, json_schema_extra=extra, **kwargs)


def trajectory(default: Any = ..., *, path: bool = False, **kwargs: Any) -> Any:
    """A field whose value changes the computed parameters."""
    return _field("trajectory", default, path, kwargs)


def operational(default: Any = ..., *, path: bool = False, **kwargs: Any) -> Any:
    """A field that changes only how a run is carried out, never its bits."""
    return _field("operational", default, path, kwargs)


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def field_class(info: FieldInfo) -> FieldClass:
    """The declared class of a field; a field without one is a programming error."""
    cls = _extra(info).get(CLASS_KEY)
    if cls not in ("trajectory", "operational"):
        raise TypeError(f"spec field {info!r} declares no trajectory/operational class")
    return cls  # type: ignore[return-value]


def is_path_field(info: FieldInfo) -> bool:
    """Whether the field holds a filesystem path."""
    return bool(_extra(info).get(PATH_KEY))
