"""Reading and comparing run ledgers.

A ledger line per recorded step holds combined and per-leaf fingerprints of
the parameters and optimizer state. Comparing two runs step by step finds the
first step where they part, and the per-leaf fingerprints name the leaves.
A step recorded twice in one directory (a resumed attempt redoing steps after
a kill) must agree with itself: a disagreement there is a resume failure too.
The ledger is read through the run directory's one tolerant reader: a torn last
line is skipped, and any other damaged line, or a record missing what its kind
needs, is a `DamagedRecord` naming the file and line (bad input, not a verdict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expspec.runtime.runs.records import DamagedRecord, iter_records
from expspec.runtime.runs.run_files import Kind, RunFiles

__all__ = ["Ledger", "StepComparison", "StepRecord", "compare", "read_ledger"]

_FP_HEX = 16  # two uint32 lanes per leaf


@dataclass(frozen=True)
class StepRecord:
    step: int
    params: str
    opt: str
    leaves: str
    attempt: int

    def same_bits(self, other: StepRecord) -> bool:
        return (self.params, self.opt, self.leaves) == (other.params, other.opt, other.leaves)


@dataclass
class Ledger:
    """What one run directory recorded."""

    leaf_names: list[str] = field(default_factory=list)
    """`params/<path>` then `opt/<path>`, in the order of each record's `leaves`."""
    steps: dict[int, StepRecord] = field(default_factory=dict)
    """The latest record of each step."""
    attempts: dict[int, dict[int, StepRecord]] = field(default_factory=dict)
    """Every record, by the attempt (process) that wrote it."""
    conflicts: dict[int, tuple[StepRecord, StepRecord]] = field(default_factory=dict)
    """Steps recorded twice with different bits: (earlier, later)."""
    checkpoints: dict[int, str] = field(default_factory=dict)
    """Step -> full hash recorded when its checkpoint was committed (the latest save)."""
    recovered: set[int] = field(default_factory=set)
    """Steps whose latest checkpoint record was recovered by a later attempt from the
    checkpoint's own metadata (the save's record was lost to a kill), not written at commit."""

    def fresh(self, attempt: int) -> bool:
        """Whether an attempt started from step 0 (only fresh starts record step 0)."""
        return 0 in self.attempts.get(attempt, {})

    def records(self, *, fresh: bool) -> dict[int, StepRecord]:
        """Records of the fresh attempts, or of the resumed ones (a later attempt's record wins)."""
        out: dict[int, StepRecord] = {}
        for attempt in sorted(self.attempts):
            if self.fresh(attempt) == fresh:
                out.update(self.attempts[attempt])
        return out

    def conflicts_of(self, *, fresh: bool) -> dict[int, tuple[StepRecord, StepRecord]]:
        """Conflicts whose later record came from a fresh (or a resumed) attempt."""
        return {s: pair for s, pair in self.conflicts.items() if self.fresh(pair[1].attempt) == fresh}

    def differing_leaves(self, a: StepRecord, b: StepRecord) -> list[str]:
        """Names of the leaves whose fingerprints differ between two records."""
        chunks = range(0, max(len(a.leaves), len(b.leaves)), _FP_HEX)
        out = []
        for index, start in enumerate(chunks):
            if a.leaves[start : start + _FP_HEX] != b.leaves[start : start + _FP_HEX]:
                out.append(self.leaf_names[index] if index < len(self.leaf_names) else f"leaf #{index}")
        return out


_FIELDS: dict[str, dict[str, type]] = {
    Kind.LEAVES: {"params": list, "opt": list},
    Kind.CHECKPOINT: {"step": int, "full_hash": str},
    Kind.STEP: {"step": int, "params": str, "opt": str, "leaves": str, "attempt": int},
}
"""What each kind of record holds; other kinds are passed over."""
_OPTIONAL = {"attempt"}
"""Fields a ledger written by an earlier version may lack."""


def _checked(path: Path, number: int, record: dict[str, Any]) -> dict[str, Any]:
    """`record`, once it holds what its kind needs."""
    for name, kind in _FIELDS.get(str(record.get("kind")), {}).items():
        value = record.get(name)
        if (isinstance(value, kind) and not isinstance(value, bool)) or (name in _OPTIONAL and name not in record):
            continue
        what = f"has a non-{kind.__name__}" if name in record else "lacks"
        raise DamagedRecord(path, number, f"a {record['kind']} record that {what} {name!r}")
    return record


def read_ledger(run_dir: Path) -> Ledger:
    """The ledger of `run_dir`; a torn last line (from a kill) is ignored, any other
    damaged line raises `DamagedRecord`."""
    ledger = Ledger()
    path = RunFiles(Path(run_dir)).ledger
    for number, record in iter_records(path):
        record = _checked(path, number, record)
        kind = record.get("kind")
        if kind == Kind.LEAVES:
            ledger.leaf_names = [f"params/{p}" for p in record["params"]] + [f"opt/{p}" for p in record["opt"]]
        elif kind == Kind.CHECKPOINT:
            ledger.checkpoints[record["step"]] = record["full_hash"]
            if record.get("recovered") is True:
                ledger.recovered.add(record["step"])
            else:
                ledger.recovered.discard(record["step"])
        elif kind == Kind.STEP:
            new = StepRecord(
                record["step"], record["params"], record["opt"], record["leaves"], record.get("attempt", 0)
            )
            old = ledger.steps.get(new.step)
            if old is not None and not old.same_bits(new):
                ledger.conflicts.setdefault(new.step, (old, new))
            ledger.steps[new.step] = new
            ledger.attempts.setdefault(new.attempt, {})[new.step] = new
    return ledger


@dataclass(frozen=True)
class StepComparison:
    compared: list[int]
    first_divergence: int | None
    leaves: list[str]
    """Leaves differing at the first divergence."""

    @property
    def agree(self) -> bool:
        return self.first_divergence is None


def compare(names: Ledger, a: dict[int, StepRecord], b: dict[int, StepRecord]) -> StepComparison:
    """Compare two runs' records at every step both recorded."""
    steps = sorted(set(a) & set(b))
    for step in steps:
        if not a[step].same_bits(b[step]):
            return StepComparison(steps, step, names.differing_leaves(a[step], b[step]))
    return StepComparison(steps, None, [])
