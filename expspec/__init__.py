"""expspec: declarative, hashed and verified-reproducible JAX experiments.

The public Python API; names are imported on first use so that `import expspec`
stays as cheap as the CLI needs.
"""

from __future__ import annotations

from expspec.lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "Experiment": "expspec.spec",
    "SpecError": "expspec.spec",
    "load_spec": "expspec.spec",
    "spec_schema": "expspec.spec",
    "Plan": "expspec.compiler",
    "PlanError": "expspec.compiler",
    "compile_spec": "expspec.compiler",
    "plan_spec": "expspec.compiler",
}

__all__ = ["__version__", *_EXPORTS]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
