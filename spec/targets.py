"""Custom targets (`package.module:attribute`): found without running, imported only when allowed.

Loading a spec never executes code. The compiler still needs the target's
source bytes for the trajectory fingerprint (a code change must change it), so
modules are located with import machinery that reads the filesystem but runs
nothing. Importing, which does run code, needs an explicit allowance.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from expspec.errors import BadInput

__all__ = [
    "ImportNotAllowed",
    "TargetNotFound",
    "check_targets",
    "custom_targets",
    "import_refusal",
    "import_target",
    "is_allowed",
    "target_source",
]


class TargetNotFound(BadInput, LookupError):
    """The module of a custom target does not exist on the search path."""


class ImportNotAllowed(BadInput, PermissionError):
    """A custom target was about to be imported without the caller's allowance."""


def _split(target: str) -> tuple[str, str]:
    module, _, attribute = target.partition(":")
    return module, attribute


def is_allowed(target: str, allow_imports: Iterable[str]) -> bool:
    """Whether `target`'s module falls under one of the allowed prefixes.

    A prefix matches whole dotted components: `mylab` allows `mylab.models`
    but not `mylabs`.
    """
    module, _ = _split(target)
    return any(module == p or module.startswith(p.rstrip(".") + ".") for p in allow_imports if p)


def _prefix(target: str) -> str:
    """The `--allow-import` prefix that covers `target`: its top-level package."""
    return _split(target)[0].split(".")[0]


def import_refusal(target: str) -> str:
    """Why `target` is not imported unless allowed, and the flag that allows it."""
    return f"importing '{target}' runs its code; allow it with --allow-import {_prefix(target)}"


def target_source(target: str, search: Sequence[Path | str] = ()) -> Path:
    """The source file of `target`'s module, located without executing anything.

    `search` folders are tried before `sys.path` (the spec's own folder, so an
    experiment can ship its module beside it).
    """
    module, _ = _split(target)
    locations: list[str] | None = [str(p) for p in search] + [p or "." for p in sys.path]
    spec = None
    parts = module.split(".")
    for depth in range(len(parts)):
        name = ".".join(parts[: depth + 1])
        spec = importlib.machinery.PathFinder.find_spec(name, locations)
        if spec is None:
            raise TargetNotFound(f"module '{name}' not found")
        locations = list(spec.submodule_search_locations or [])
        if depth < len(parts) - 1 and not locations:
            raise TargetNotFound(f"'{name}' is a module, not a package")
    assert spec is not None
    if not spec.origin or not spec.has_location or not Path(spec.origin).is_file():
        raise TargetNotFound(f"module '{module}' has no source file")
    return Path(spec.origin)


def import_target(target: str, allow_imports: Iterable[str], search: Sequence[Path | str] = ()) -> Any:
    """Import and return the object `target` names, if the caller allowed it."""
    allowed = list(allow_imports)
    if not is_allowed(target, allowed):
        raise ImportNotAllowed(import_refusal(target))
    module_name, attribute = _split(target)
    added = [str(p) for p in search if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise TargetNotFound(f"cannot import '{module_name}': {err}") from None
    finally:
        for path in added:
            sys.path.remove(path)
    for name in attribute.split("."):
        if not hasattr(obj, name):
            raise TargetNotFound(f"'{module_name}' has no attribute '{attribute}'")
        obj = getattr(obj, name)
    return obj


def custom_targets(experiment: Any) -> dict[str, str]:
    """Key path -> target of every `custom` component of an experiment."""
    out = {}
    for section in ("model", "data"):
        component = getattr(experiment, section)
        if getattr(component, "kind", None) == "custom":
            out[f"{section}.target"] = component.target
    return out


def check_targets(
    experiment: Any, allow_imports: Iterable[str], search: Sequence[Path | str] = (), file: str | None = None
) -> list[str]:
    """Import the allowed custom targets and check they are callable.

    Returns a note for each target left unimported; raises `SpecError` for a
    target that fails to import or is not callable.
    """
    from .errors import Problem, SpecError

    allowed = list(allow_imports)
    notes, problems = [], []
    for key, target in custom_targets(experiment).items():
        if not is_allowed(target, allowed):
            notes.append(f"{key}: '{target}' located, not imported (--allow-import {_prefix(target)} to check it)")
            continue
        try:
            obj = import_target(target, allowed, search)
        except TargetNotFound as err:
            problems.append(Problem(file, None, key, str(err), target))
            continue
        except Exception as err:  # the user's module raised while importing
            problems.append(Problem(file, None, key, f"importing it raised {type(err).__name__}: {err}", target))
            continue
        if not callable(obj):
            problems.append(Problem(file, None, key, "is not callable", target))
    if problems:
        raise SpecError(problems)
    return notes
