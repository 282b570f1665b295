"""The run directory's format: its file names, its record kinds, and how an attempt ended.

```
runs/<name>/
  plan.json  env.json  events.jsonl  ledger.jsonl  metrics.jsonl
  ledger.process-<i>.jsonl  LOCK.process-<i>   (the other processes of a cluster)
  checkpoints/<step>/   rejected/   tensorboard/   plan.<n>.json (plans an upgrade replaced)
  profile/              (`jax.profiler` traces, with [logging] profile)
  trackers.json  wandb/ (the W&B and MLflow runs of [logging] wandb / mlflow, and W&B's files)
  LOCK   stderr.log (what native libraries print)   launch.json (`exp launch`'s members)
  audits.jsonl          (the verdicts of `exp audit RUN_DIR`, appended by the audit)
```
Every writer and every reader of a run directory (the run, the audit, `exp runs`,
`exp report`, `exp diff`) names these files and record kinds through this module,
so a change of format is made here once. Records are read with the one tolerant
reader in `records` (a torn last line skipped, reading from the end for status).
Imports no JAX: the CLI reads run directories without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "AUDITS",
    "CHECKPOINTS",
    "ENV",
    "EVENTS",
    "LAUNCH",
    "LEDGER",
    "LOCK",
    "METRICS",
    "PLAN",
    "PROFILE",
    "REJECTED",
    "STDERR_LOG",
    "TENSORBOARD",
    "TRACKERS",
    "WANDB",
    "AttemptOutcome",
    "Event",
    "Kind",
    "RunFiles",
    "attempt_outcome",
    "process_file",
]

PLAN = "plan.json"
ENV = "env.json"
EVENTS = "events.jsonl"
LEDGER = "ledger.jsonl"
METRICS = "metrics.jsonl"
AUDITS = "audits.jsonl"
"""`exp audit RUN_DIR` appends one line per check to this file in the run directory."""
LOCK = "LOCK"
STDERR_LOG = "stderr.log"
LAUNCH = "launch.json"
CHECKPOINTS = "checkpoints"
"""The checkpoint folder's default name (the spec's `checkpoint.directory` may say another)."""
REJECTED = "rejected"
TENSORBOARD = "tensorboard"
PROFILE = "profile"
"""`jax.profiler` traces of the steps `[logging] profile` names."""
TRACKERS = "trackers.json"
"""Which W&B and MLflow runs this run directory logs to, and the last step each holds."""
WANDB = "wandb"
"""W&B's own files (an offline run's, for `wandb sync`), unless `$WANDB_DIR` says elsewhere."""


def process_file(filename: str, index: int) -> str:
    """Process `index`'s copy of a per-process file: `ledger.jsonl` -> `ledger.process-1.jsonl`;
    process 0 keeps the plain name."""
    if index == 0:
        return filename
    stem, dot, suffix = filename.partition(".")
    return f"{stem}.process-{index}{dot}{suffix}"


class Kind(StrEnum):
    """The `kind` of a ledger record."""

    LEAVES = "leaves"
    """The names of the parameter and optimizer leaves, once per attempt."""
    STEP = "step"
    """One step's fingerprints."""
    CHECKPOINT = "checkpoint"
    """A committed checkpoint's full hash."""


class Event(StrEnum):
    """The `event` of an events.jsonl record."""

    START = "start"
    RESUME = "resume"
    FINISHED = "finished"
    STOPPED = "stopped"
    PREEMPTED = "preempted"
    ERROR = "error"
    CHECKPOINT_SAVE = "checkpoint_save"
    CHECKPOINT_REJECTED = "checkpoint_rejected"
    CHECKPOINT_CLEANUP = "checkpoint_cleanup"
    CHECKPOINT_RECORDS_RECOVERED = "checkpoint_records_recovered"
    UPGRADE = "upgrade"
    RECORDS_DAMAGED = "records_damaged"
    ENVIRONMENT_CHANGE = "environment_change"
    OPERATIONAL_CHANGE = "operational_change"
    THROTTLE = "throttle"
    LOCK_TAKEOVER = "lock_takeover"
    LAYOUT = "layout"
    TRACKER_ERROR = "tracker_error"
    """A tracker (W&B, MLflow) failed: it gets nothing more this attempt; the run goes on."""
    TRACKER_DROPPED = "tracker_dropped"
    """Records the trackers' queue had no room for (they stay in metrics.jsonl and events.jsonl)."""


BEGINS = frozenset({Event.START, Event.RESUME})
"""Events that begin an attempt."""
ENDS = frozenset({Event.FINISHED, Event.STOPPED, Event.PREEMPTED, Event.ERROR})
"""Events that end one."""


@dataclass(frozen=True)
class AttemptOutcome:
    """How the latest attempt ended, and the event that says so."""

    how: Literal["finished", "stopped", "preempted", "error", "unended", "none"]
    """An end event's name; `unended` when the attempt began and recorded no end (it is
    running, or was killed: only the LOCK tells which); `none` when no attempt began."""
    event: dict[str, Any] | None


def attempt_outcome(events_newest_first: Iterable[dict[str, Any]]) -> AttemptOutcome:
    """How the latest attempt ended, from the events newest first (`records_backwards`
    of events.jsonl, or `reversed` of a list): the first that begins or ends an attempt decides."""
    for event in events_newest_first:
        name = event.get("event")
        if name in ENDS:
            return AttemptOutcome(str(name), event)  # type: ignore[arg-type]
        if name in BEGINS:
            return AttemptOutcome("unended", event)
    return AttemptOutcome("none", None)


def attempts(events: Iterable[dict[str, Any]]) -> int:
    """How many attempts began."""
    return sum(1 for e in events if e.get("event") in BEGINS)


@dataclass(frozen=True)
class RunFiles:
    """Paths of one run directory."""

    root: Path

    @property
    def plan(self) -> Path:
        return self.root / PLAN

    @property
    def env(self) -> Path:
        return self.root / ENV

    @property
    def events(self) -> Path:
        return self.root / EVENTS

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def audits(self) -> Path:
        return self.root / AUDITS

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def stderr_log(self) -> Path:
        return self.root / STDERR_LOG

    @property
    def launch(self) -> Path:
        return self.root / LAUNCH

    @property
    def rejected(self) -> Path:
        return self.root / REJECTED

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def trackers(self) -> Path:
        return self.root / TRACKERS

    @property
    def wandb(self) -> Path:
        return self.root / WANDB

    @property
    def default_checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def own(self, filename: str, index: int) -> Path:
        """Process `index`'s copy of a per-process file (the ledger, the LOCK, stderr.log)."""
        return self.root / process_file(filename, index)

    def locks(self) -> list[Path]:
        """Every process's LOCK."""
        return sorted(self.root.glob(f"{LOCK}*"))

    def process_ledgers(self) -> list[Path]:
        """The ledgers of processes other than 0."""
        stem, _, suffix = LEDGER.partition(".")
        return sorted(self.root.glob(f"{stem}.process-*.{suffix}"))

    def record_files(self) -> list[Path]:
        """Every JSON-lines record file of the run: events, metrics, and each process's ledger."""
        return [self.events, self.metrics, self.ledger, *self.process_ledgers()]

    def kept_plans(self) -> list[Path]:
        """The plans earlier upgrades replaced, oldest first: `plan.1.json`, `plan.2.json`, ..."""
        stem, _, suffix = PLAN.partition(".")
        found = [p for p in self.root.glob(f"{stem}.*.{suffix}") if p.name.split(".")[1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.split(".")[1]))

    def kept_plan(self, number: int) -> Path:
        stem, _, suffix = PLAN.partition(".")
        return self.root / f"{stem}.{number}.{suffix}"

    def is_run(self) -> bool:
        """Whether the folder holds a run. LOCK is the first file a run creates: a run that
        failed while building its model or data has nothing else, and is still a run."""
        return any(path.is_file() for path in (self.plan, self.events, self.lock))
