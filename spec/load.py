"""Loading a spec file into a validated `Experiment`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from .compose import Composed, SourceMap, apply_override, compose
from .errors import SpecError
from .experiment import Experiment
from .fields import is_path_field
from .overrides import Override, parse_overrides
from .problems import problems_from
from .walk import iter_fields

__all__ = ["LoadedSpec", "PATH_KEYS", "apply_overrides", "load_spec"]

PATH_KEYS: tuple[tuple[str, ...], ...] = tuple(
    sorted({path for path, info, _ in iter_fields(Experiment) if is_path_field(info)})
)
"""Keys that hold filesystem paths, wherever a variant declares one."""


@dataclass(frozen=True)
class LoadedSpec:
    """A validated experiment and what it was made from."""

    experiment: Experiment
    file: str
    """The spec file as the caller named it."""
    folder: Path
    """The spec file's folder: relative paths in the experiment resolve against it."""
    files: tuple[str, ...]
    """Every file read (the spec, then what it extends)."""
    overrides: tuple[Override, ...]


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _rebase_paths(composed: Composed) -> None:
    """Make relative paths relative to the main spec's folder.

    A path is written relative to the file that holds it (a base spec in
    another folder, or the working directory for an override); the experiment
    carries one convention: relative to the main spec file.
    """
    main_folder = composed.main.path.parent

    def rebase(value: Any, folder: Path) -> Any:
        if not isinstance(value, str) or not value or os.path.isabs(value):
            return value
        return PurePosixPath(*Path(os.path.relpath(folder / value, main_folder)).parts).as_posix()

    for key in PATH_KEYS:
        value = _get(composed.data, key)
        origin = composed.sources.locate(key)
        if value is None or origin is None or origin.folder == main_folder:
            continue
        table = _get(composed.data, key[:-1])
        # A path field holds one path or (data.files) a list of paths and globs.
        table[key[-1]] = (
            [rebase(v, origin.folder) for v in value] if isinstance(value, list) else rebase(value, origin.folder)
        )


def _validate(data: dict[str, Any], sources: SourceMap, file: str) -> Experiment:
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise SpecError(problems_from(err, Experiment, data, sources, file)) from None


def apply_overrides(experiment: Experiment, overrides: list[str] | tuple[str, ...]) -> Experiment:
    """`experiment` with dotted overrides applied and validated again."""
    data = experiment.model_dump(mode="json", by_alias=True)
    sources = SourceMap()
    for override in parse_overrides(overrides):
        apply_override(data, sources, override, Path.cwd())
    return _validate(data, sources, "<spec>")


def load_spec(file: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Load, compose and validate a spec; raise `SpecError` listing every problem."""
    parsed = parse_overrides(overrides)
    composed = compose(file, parsed)
    _rebase_paths(composed)
    return LoadedSpec(
        experiment=_validate(composed.data, composed.sources, composed.main.file),
        file=composed.main.file,
        folder=composed.main.path.parent,
        files=composed.files,
        overrides=parsed,
    )
