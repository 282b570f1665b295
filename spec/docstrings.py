"""The string literal under each class attribute, read from the module's source.

Pydantic's `use_attribute_docstrings` does the same job, but finds each
class's source by walking frames and re-tokenising and re-parsing it, class by
class; for the spec's 29 models that cost more than the rest of importing the
spec. Here each module is parsed once.
"""

from __future__ import annotations

import ast
import inspect
import sys
from functools import cache

__all__ = ["attribute_docstrings"]


@cache
def attribute_docstrings(module: str) -> dict[str, dict[str, str]]:
    """Class qualname -> attribute -> its docstring, for the classes of `module`.

    A module without source (a frozen application) gives no docstrings.
    """
    try:
        source = inspect.getsource(sys.modules[module])
    except (KeyError, OSError, TypeError):
        return {}
    tree = ast.parse(source)
    found: dict[str, dict[str, str]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                found[prefix + node.name] = _under_attributes(node.body)
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return found


def _under_attributes(body: list[ast.stmt]) -> dict[str, str]:
    """`name: T = ...` directly followed by a string literal, as pydantic reads it."""
    docs = {}
    for statement, after in zip(body, body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(after.value.value)
    return docs
