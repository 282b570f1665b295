"""Executing a plan with JAX, Flax NNX, Optax and Orbax (everything with side effects).

The public entry points, imported on first use: naming `exp.runtime` (as the
CLI does for every command) imports no JAX until a name below is used. A name
here never equals a submodule's (`execute` is `exp.runtime.execute.execute`):
importing the submodule would set the package attribute and hide the export.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # `exp run`, `exp launch`, `exp sweep`
    "RunOptions": "exp.runtime.execute",
    "RunResult": "exp.runtime.execute",
    "RunFailed": "exp.runtime.execute",
    "RunRefused": "exp.runtime.execute",
    "LaunchOptions": "exp.runtime.local_cluster",
    "LaunchResult": "exp.runtime.local_cluster",
    "launch": "exp.runtime.local_cluster",
    "SweepOptions": "exp.runtime.sweep",
    "SweepResult": "exp.runtime.sweep",
    "run_sweep": "exp.runtime.sweep",
    # `exp runs`: a run directory's files and status
    "RunFiles": "exp.runtime.run_files",
    "RunStatus": "exp.runtime.status",
    "find_runs": "exp.runtime.status",
    "read_status": "exp.runtime.status",
    # The pieces of a run, for code that trains outside `exp run`
    "Components": "exp.runtime.build",
    "build_components": "exp.runtime.build",
    "DATA_BUILDERS": "exp.runtime.data",
    "build_data": "exp.runtime.data",
    "MODEL_BUILDERS": "exp.runtime.models",
    "apply_lora": "exp.runtime.models",
    "build_model": "exp.runtime.models",
    "full_hash": "exp.runtime.hashing",
    "leaf_hashes": "exp.runtime.hashing",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'exp.runtime' has no attribute {name!r}")
