"""Proving a plan's reproducibility: reruns in fresh processes, ledger comparison, lockfiles.

The public entry points, imported on first use, so naming `expspec.audit` costs
no JAX until a name below is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # `exp audit`
    "AuditRequest": "expspec.audit.run",
    "run_audit": "expspec.audit.run",
    "AuditReport": "expspec.audit.report",
    "CheckResult": "expspec.audit.report",
    "RunError": "expspec.audit.processes",
    # `exp lock` and `exp audit --lock`
    "read_lock": "expspec.audit.lockfile",
    "record_lock": "expspec.audit.lockfile",
    "verify_lock": "expspec.audit.lockfile",
    # Comparing two runs' records and states
    "read_ledger": "expspec.audit.ledger",
    "leaf_distances": "expspec.audit.distance",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'expspec.audit' has no attribute {name!r}")
