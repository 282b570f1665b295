"""The lockfile's shape: a typed document of typed entries (lock version 2).

What `exp lock` writes and `exp audit --lock` reads are the same models, so a
key cannot be written under one name and read under another. The JSON form
(`to_json`) is the one lock version 2 has always had: sorted keys, two-space
indent, a final newline.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LOCK_VERSION", "LedgerStep", "LockDocument", "LockEntry"]

LOCK_VERSION = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LedgerStep(_Strict):
    """One ledger record's fingerprints: combined parameters, combined optimizer, per leaf."""

    params: str
    opt: str
    leaves: str


class LockEntry(_Strict):
    """One spec's recorded bits and everything they depend on."""

    spec: str
    """The spec file, relative to the lock's folder."""
    overrides: list[str] = Field(default_factory=list)
    name: str | None = None
    steps: int
    trajectory: str
    spec_values: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str]
    """`data`, `base_weights`, `base_checkpoint`, `code:<module>` and input-file (`data.tokenizer`) fingerprints."""
    environment: dict[str, Any]
    environment_id: str | None = None
    full_hashes: dict[str, str]
    """Step -> full hash of the checkpoint saved there."""
    leaf_names: list[str]
    ledger: dict[str, LedgerStep]
    leaf_norms: dict[str, float]
    """L2 norm of every leaf at the last step. Lock version 2 holds it; no verdict
    reads it (a cross-environment distance needs both sides' arrays, see `across`)."""


class LockDocument(_Strict):
    version: int = LOCK_VERSION
    recorded: str
    steps: int
    entries: list[LockEntry]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)  # a read document writes back as read

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
