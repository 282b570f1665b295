"""Executing a plan with JAX, Flax NNX, Optax and Orbax (everything with side effects).

The public entry points, imported on first use: naming `expspec.runtime` (as the
CLI does for every command) imports no JAX until a name below is used. A name
here never equals a submodule's (`execute` is `expspec.runtime.processes.execute.execute`):
importing the submodule would set the package attribute and hide the export.
"""

from __future__ import annotations

from expspec.lazy import lazy_getattr

_EXPORTS = {
    # `exp run`, `exp launch`, `exp sweep`
    "RunOptions": "expspec.runtime.processes.execute",
    "RunResult": "expspec.runtime.processes.execute",
    "RunFailed": "expspec.runtime.processes.execute",
    "RunRefused": "expspec.runtime.processes.execute",
    "LaunchOptions": "expspec.runtime.processes.local_cluster",
    "LaunchResult": "expspec.runtime.processes.local_cluster",
    "launch": "expspec.runtime.processes.local_cluster",
    "SweepOptions": "expspec.runtime.processes.sweep",
    "SweepResult": "expspec.runtime.processes.sweep",
    "run_sweep": "expspec.runtime.processes.sweep",
    # `exp runs`: a run directory's files and status
    "RunFiles": "expspec.runtime.runs.run_files",
    "RunStatus": "expspec.runtime.runs.status",
    "find_runs": "expspec.runtime.runs.status",
    "read_status": "expspec.runtime.runs.status",
    # The pieces of a run, for code that trains outside `exp run`
    "Components": "expspec.runtime.engine.build",
    "build_components": "expspec.runtime.engine.build",
    "DATA_BUILDERS": "expspec.runtime.data",
    "build_data": "expspec.runtime.data",
    "MODEL_BUILDERS": "expspec.runtime.models",
    "apply_lora": "expspec.runtime.models",
    "build_model": "expspec.runtime.models",
    "full_hash": "expspec.runtime.engine.hashing",
    "leaf_hashes": "expspec.runtime.engine.hashing",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
