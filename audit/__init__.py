"""Proving a plan's reproducibility: reruns in fresh processes, ledger comparison, lockfiles.

The public entry points, imported on first use, so naming `exp.audit` costs
no JAX until a name below is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # `exp audit`
    "AuditRequest": "exp.audit.run",
    "run_audit": "exp.audit.run",
    "AuditReport": "exp.audit.report",
    "CheckResult": "exp.audit.report",
    "RunError": "exp.audit.processes",
    # `exp lock` and `exp audit --lock`
    "read_lock": "exp.audit.lockfile",
    "record_lock": "exp.audit.lockfile",
    "verify_lock": "exp.audit.lockfile",
    # Comparing two runs' records and states
    "read_ledger": "exp.audit.ledger",
    "leaf_distances": "exp.audit.distance",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'exp.audit' has no attribute {name!r}")
