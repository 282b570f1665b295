"""Turning Pydantic's validation errors into one readable line per problem."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from .compose import SourceMap
from .errors import NO_VALUE, Problem, key_path_text
from .rules import RULE_ERROR
from .walk import field_key, section_at

__all__ = ["problems_from"]

_TYPE_NAMES = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "tuple_type": "must be an array",
    "list_type": "must be an array",
    "finite_number": "must be a finite number",
    "missing": "required key is missing",
}

_PATTERN_HINTS = {
    "name": "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
    "target": "must name an object as 'package.module:attribute'",
}


def _normalise(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop the union tags Pydantic inserts (`model.mlp.hidden` -> `model.hidden`)."""
    out: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("kind") == part:
            continue
        out.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(out)


def _allowed_keys(root: type[BaseModel], parent: tuple[Any, ...], data: Any) -> list[str]:
    model = section_at(root, parent, data)
    if model is None:
        return []
    return [field_key(name, info) for name, info in model.model_fields.items()]


def _message(error: dict[str, Any], key: Any, allowed: list[str]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if near:
            return f"unknown key; did you mean '{near[0]}'?"
        return f"unknown key (allowed here: {', '.join(allowed)})" if allowed else "unknown key"
    if kind in _TYPE_NAMES:
        return _TYPE_NAMES[kind]
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"unknown kind; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        return _PATTERN_HINTS.get(str(key), f"must match {ctx.get('pattern')}")
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"is too long (at most {ctx.get('max_length')} characters)"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} items"
    msg = str(error["msg"])
    return msg[:1].lower() + msg[1:]


def _value_at(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return NO_VALUE
    return data


def _got(error: dict[str, Any], data: Any, loc: tuple[Any, ...]) -> Any:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == RULE_ERROR:
        return ctx.get("got", NO_VALUE)
    if kind in ("missing", "union_tag_not_found"):
        return NO_VALUE
    if kind == "union_tag_invalid":
        return _value_at(data, loc)  # the tag as written (Pydantic hands it back as a string)
    value = error.get("input", NO_VALUE)
    if isinstance(value, dict):
        return NO_VALUE
    return value


def problems_from(
    err: ValidationError, root: type[BaseModel], data: dict[str, Any], sources: SourceMap, main_file: str
) -> list[Problem]:
    """One `Problem` per Pydantic error, each placed at its key's file and line."""
    problems: list[Problem] = []
    for error in err.errors():
        loc = _normalise(tuple(error["loc"]), data)
        if error["type"] == RULE_ERROR:
            loc = (*loc, *(error.get("ctx") or {}).get("field", ()))
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")
        key = loc[-1] if loc else ""
        allowed = _allowed_keys(root, loc[:-1], data) if error["type"] == "extra_forbidden" else []
        origin = sources.locate(loc)
        file, line = (origin.file, origin.line) if origin else (main_file, None)
        problems.append(Problem(file, line, key_path_text(loc), _message(error, key, allowed), _got(error, data, loc)))
    return problems
