"""The run directory: its files, its plan, and whether a new process may continue it.

```
runs/<name>/
  plan.json  env.json  events.jsonl  ledger.jsonl  metrics.jsonl
  checkpoints/<step>/   LOCK   stderr.log (what native libraries print)
  audits.jsonl          (the verdicts of `exp audit RUN_DIR`, appended by the audit)
```
A directory whose plan has another trajectory fingerprint is never continued:
the refusal happens before anything in it is touched.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exp.compiler import Plan
from exp.spec import SpecError

__all__ = ["RunDir", "RunRefused", "operational_changes", "write_json_atomic"]


class RunRefused(Exception):
    """The run directory belongs to another experiment (or cannot be read)."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def operational_changes(before: Plan, after: Plan) -> dict[str, list[Any]]:
    """Field -> [old, new] for every resolved field that differs (all operational
    when the trajectory fingerprints are equal)."""
    old, new = before.field_values(), after.field_values()
    return {key: [old.get(key), new.get(key)] for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory."""

    root: Path

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.jsonl"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / "LOCK"

    def checkpoints(self, plan: Plan, spec_dir: Path) -> Path:
        policy = plan.checkpoint
        base = self.root if policy.relative_to == "run_dir" else spec_dir
        return (base / policy.directory).absolute()

    def recorded_plan(self) -> Plan | None:
        """The plan this directory was started with, if any."""
        if not self.plan.exists():
            return None
        try:
            return Plan.from_json(self.plan.read_bytes(), file=str(self.plan))
        except SpecError as err:
            raise RunRefused(f"{self.plan}: cannot continue this run: {err.problems[0].message}") from None

    def check_continuable(self, plan: Plan) -> Plan | None:
        """Refuse (before touching anything) a directory of another trajectory."""
        previous = self.recorded_plan()
        if previous is not None and previous.fingerprints.trajectory != plan.fingerprints.trajectory:
            raise RunRefused(
                f"{self.root}: holds a run of trajectory {previous.fingerprints.trajectory[:12]}, "
                f"this spec has trajectory {plan.fingerprints.trajectory[:12]}; "
                "use another --run-dir (exp plan --explain shows what changed the math)"
            )
        return previous
