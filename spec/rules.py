"""Cross-field rules raise errors that still point at one key.

A Pydantic after-validator can only fail at the level of the model it runs on;
the error then names a whole table. `rule_error` carries the offending field's
dotted path (relative to that model) so the error report can name the exact key
and its TOML line.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticCustomError

__all__ = ["RULE_ERROR", "rule_error"]

RULE_ERROR = "spec_rule"


def rule_error(field: str | tuple[str, ...], message: str, got: Any = None) -> PydanticCustomError:
    """An error about `field` (a dotted name or a key tuple, relative to the
    validating model)."""
    parts = tuple(field.split(".")) if isinstance(field, str) else field
    # The message is a template for Pydantic; braces would be read as fields.
    text = message.replace("{", "(").replace("}", ")")
    return PydanticCustomError(RULE_ERROR, text, {"field": parts, "got": got})
