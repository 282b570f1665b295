"""The `exp` command line: thin commands over the package API.

Every command imports its heavy dependencies inside its body, so `exp --help`,
`exp plan` and `exp validate` never import JAX.
"""

from __future__ import annotations

from .app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exp")
