"""Arguments and options, declared once as plain data.

A command that the fast path runs (fast.py: `exp plan`, `validate`, `diff`,
`runs`) lists its `Param`s in `PARAMS` next to a plain `command` function. The
typer application builds its command from the same list (`typer_command`), for
help, completion and usage errors, and the fast path parses argv with it
without importing typer: an option cannot be declared twice and disagree.

This module imports no typer until typer asks for it: `SpecArg`, `JsonOpt`, ...
are the typer annotations the other commands use, built on first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

__all__ = ["ALLOW_IMPORT", "JSON", "OVERRIDES", "SPEC", "Param", "typer_command"]


@dataclass(frozen=True)
class Param:
    """One argument (no `flag`) or option of a command."""

    name: str
    """The keyword the command's function takes."""
    type: Any
    """Its annotation: bool for a flag, list[...] for a repeatable option or a variadic argument."""
    help: str
    flag: str | None = None
    """The option's name, `--json`; None for a positional argument."""
    metavar: str | None = None
    default: Any = None
    required: bool = False
    """An argument that must be given (typer: no default)."""
    min: int | None = None
    """The least value of an int option."""
    show_default: bool | None = None
    """None leaves typer's choice."""

    @property
    def item(self) -> Any:
        """The type of one value: `Path` for list[Path] | None."""
        kinds = [t for t in (get_args(self.type) or (self.type,)) if t is not type(None)]
        kind = kinds[0] if len(kinds) == 1 else self.type
        return get_args(kind)[0] if get_origin(kind) is list else kind

    @property
    def many(self) -> bool:
        """A variadic argument or a repeatable option."""
        return any(get_origin(t) is list for t in (self.type, *get_args(self.type)))

    def annotation(self) -> Any:
        """`Annotated[type, typer.Option(...)]` (or `typer.Argument`), as typer reads it."""
        import typer

        settings: dict[str, Any] = {"help": self.help}
        if self.metavar is not None:
            settings["metavar"] = self.metavar
        if self.min is not None:
            settings["min"] = self.min
        if self.show_default is not None:
            settings["show_default"] = self.show_default
        info = typer.Argument(**settings) if self.flag is None else typer.Option(self.flag, **settings)
        return Annotated[self.type, info]


SPEC = Param("spec", Path, "Spec file.", metavar="SPEC", required=True, show_default=False)
OVERRIDES = Param(
    "overrides", list[str] | None, "Overrides, e.g. train.steps=100.", metavar="[KEY=VALUE...]", show_default=False
)
ALLOW_IMPORT = Param(
    "allow_import",
    list[str] | None,
    "Allow importing custom targets under PREFIX (repeatable).",
    flag="--allow-import",
    metavar="PREFIX",
)
JSON = Param("as_json", bool, "Print the result as JSON on stdout.", flag="--json", default=False)

_ANNOTATIONS = {"SpecArg": SPEC, "OverridesArg": OVERRIDES, "AllowImportOpt": ALLOW_IMPORT, "JsonOpt": JSON}


def __getattr__(name: str) -> Any:
    """`SpecArg`, `OverridesArg`, `AllowImportOpt`, `JsonOpt`: typer annotations for the commands written for typer."""
    if name in _ANNOTATIONS:
        return _ANNOTATIONS[name].annotation()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def typer_command(command: Callable[..., int | None], params: Sequence[Param]) -> Callable[..., None]:
    """`command` as typer calls it: a signature typer reads from `params`, and an
    exit code turned into `typer.Exit`."""
    import typer

    def typed(**values: Any) -> None:
        code = command(**values)
        if code:
            raise typer.Exit(code)

    parameters = [
        inspect.Parameter(
            p.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=inspect.Parameter.empty if p.required else p.default,
            annotation=p.annotation(),
        )
        for p in params
    ]
    typed.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    typed.__annotations__ = {p.name: p.annotation for p in parameters}
    typed.__name__ = typed.__qualname__ = command.__name__
    typed.__module__ = command.__module__
    return typed
