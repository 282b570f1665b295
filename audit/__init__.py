"""Proving a plan's reproducibility: reruns in fresh processes, ledger comparison, lockfiles.

The public entry points, imported on first use, so naming `expspec.audit` costs
no JAX until a name below is used.
"""

from __future__ import annotations

from expspec.lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _EXPORTS)
