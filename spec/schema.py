"""The JSON Schema of a spec file, for editors and validators."""

from __future__ import annotations

from typing import Any

from .experiment import Experiment

__all__ = ["spec_schema"]

_EXTENDS = {
    "type": "string",
    "minLength": 1,
    "description": "Another spec file this one builds on (relative to this file). "
    "Tables are merged key by key; a table whose `kind` changes is replaced whole.",
}
_PARTIAL = "Partial"


def _partial(node: Any) -> Any:
    """A copy of a schema node that accepts any subset of the keys it allows.

    A file that `extends` another may leave out required keys, and even a
    section's `kind`, so: no `required`, and unions become `anyOf`.
    """
    if isinstance(node, list):
        return [_partial(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("required", "discriminator"):
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
            out[key] = value + _PARTIAL
        elif key == "oneOf":
            out["anyOf"] = _partial(value)
        elif key == "properties":
            out[key] = {name: _partial(prop) for name, prop in value.items()}
        else:
            out[key] = _partial(value)
    return out


def spec_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a spec file.

    Every property carries `x-exp-class` (`trajectory` or `operational`). A file
    with `extends` is checked as a partial spec: what it leaves out comes from
    the file it extends, and `exp validate` checks the composed whole.
    """
    full = Experiment.model_json_schema(by_alias=True, mode="validation")
    defs = full.pop("$defs")
    full["properties"] = {"extends": _EXTENDS, **full["properties"]}
    root = {key: value for key, value in full.items() if key != "title"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "expspec experiment",
        "description": root.pop("description", ""),
        "type": "object",
        "if": {"required": ["extends"]},
        "then": {"$ref": f"#/$defs/Experiment{_PARTIAL}"},
        "else": {"$ref": "#/$defs/Experiment"},
        "$defs": {
            **defs,
            "Experiment": root,
            **{name + _PARTIAL: _partial(node) for name, node in defs.items()},
            f"Experiment{_PARTIAL}": _partial(root),
        },
    }
