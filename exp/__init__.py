"""expspec: declarative, hashed and verified-reproducible JAX experiments.

The public Python API; names are imported on first use so that `import exp`
stays as cheap as the CLI needs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Experiment": "exp.spec",
    "SpecError": "exp.spec",
    "load_spec": "exp.spec",
    "spec_schema": "exp.spec",
    "Plan": "exp.compiler",
    "PlanError": "exp.compiler",
    "compile_spec": "exp.compiler",
    "plan_spec": "exp.compiler",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'exp' has no attribute {name!r}")
