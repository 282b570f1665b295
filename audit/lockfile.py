"""Lockfiles: recorded bits of each spec's first steps, for a CI reproducibility gate.

A lock entry holds the trajectory fingerprint, the environment class and the
ledger and full hashes of a short run. Verifying it separates three outcomes:
the spec's trajectory changed (re-record the lock), the trajectory is the same
but the bits differ (a regression), or the environment class differs (bitwise
equality is not promised; distances are reported instead).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exp.compiler import Plan, plan_spec
from exp.spec import SpecError

from .checks import SpecTarget, audit_request
from .ledger import Ledger, StepRecord, compare, read_ledger
from .processes import RunError, run_exp
from .report import CheckResult

__all__ = ["LOCK_VERSION", "record_lock", "verify_lock"]

LOCK_VERSION = 1
DEFAULT_STEPS = 20


def _leaf_norms(run_dir: Path, step: int) -> dict[str, float]:
    """L2 norm of every parameter and optimizer leaf: what a cross-environment
    comparison can still measure against a lock that holds no arrays."""
    import numpy as np

    from exp.runtime.hashing import canonical_leaves

    from .checkpoints import read_checkpoint

    state = read_checkpoint(run_dir / "checkpoints", step).state
    leaves = canonical_leaves({k: state[k] for k in ("params", "opt") if k in state})
    return {path: float(np.linalg.norm(np.asarray(leaf, np.float64).ravel())) for path, leaf in leaves}


def _run(target: SpecTarget, steps: int, run_dir: Path) -> tuple[Ledger, dict[str, Any]]:
    run_exp(audit_request(target, run_dir, steps, max(1, steps // 2)))
    return read_ledger(run_dir), json.loads((run_dir / "env.json").read_text())


def _record(record: StepRecord) -> dict[str, str]:
    return {"params": record.params, "opt": record.opt, "leaves": record.leaves}


def record_lock(targets: Sequence[SpecTarget], steps: int | None, lock_path: Path, workdir: Path) -> dict[str, Any]:
    """Run each spec for `steps` steps and return the lock document."""
    entries = []
    for index, target in enumerate(targets):
        plan = plan_spec(target.spec, list(target.overrides))
        n = min(steps or DEFAULT_STEPS, plan.spec.train.steps)
        run_dir = workdir / f"lock-{index}"
        ledger, env = _run(target, n, run_dir)
        entries.append(
            {
                "spec": os.path.relpath(Path(target.spec).resolve(), lock_path.resolve().parent),
                "overrides": list(target.overrides),
                "name": plan.name,
                "steps": n,
                "trajectory": plan.fingerprints.trajectory,
                "spec_values": plan.field_values(),
                "environment": env["class"],
                "environment_id": env["class_id"],
                "full_hashes": {str(s): h for s, h in sorted(ledger.checkpoints.items())},
                "leaf_names": ledger.leaf_names,
                "ledger": {str(s): _record(r) for s, r in sorted(ledger.steps.items())},
                "leaf_norms": _leaf_norms(run_dir, n),
            }
        )
    return {"version": LOCK_VERSION, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "entries": entries}


def _trajectory_changes(entry: dict[str, Any], plan: Plan) -> dict[str, list[Any]]:
    now = plan.field_values()
    then = entry.get("spec_values", {})
    return {
        key: [then.get(key), now.get(key)]
        for key in sorted(set(now) | set(then))
        if plan.fields.get(key, "trajectory") == "trajectory" and then.get(key) != now.get(key)
    }


def _verify_entry(entry: dict[str, Any], folder: Path, run_dir: Path, allow_imports: Sequence[str]) -> CheckResult:
    spec = os.path.normpath(folder / entry["spec"])
    name, t0 = entry.get("name", spec), time.perf_counter()
    target = SpecTarget(spec, tuple(entry.get("overrides", ())), tuple(allow_imports))
    try:
        plan = plan_spec(spec, list(target.overrides))
    except SpecError as err:
        return CheckResult("lock", spec, name, "error", f"the spec does not load: {err.problems[0]}")
    if plan.fingerprints.trajectory != entry["trajectory"]:
        changes = _trajectory_changes(entry, plan)
        listed = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in list(changes.items())[:5]) or "custom code"
        return CheckResult(
            "lock",
            spec,
            plan.name,
            "failed",
            f"the spec's trajectory changed since the lock was recorded ({listed}); re-record it with `exp lock`",
            kind="trajectory_changed",
            details={"changes": changes, "locked": entry["trajectory"], "now": plan.fingerprints.trajectory},
            likely_cause="an intended change to the experiment: re-record the lock",
        )
    ledger, env = _run(target, entry["steps"], run_dir)
    seconds = time.perf_counter() - t0
    locked = Ledger(leaf_names=entry["leaf_names"])
    locked.steps = {
        int(s): StepRecord(int(s), r["params"], r["opt"], r["leaves"], 0) for s, r in entry["ledger"].items()
    }
    comparison = compare(locked, locked.steps, ledger.steps)
    hashes_now = {str(s): h for s, h in ledger.checkpoints.items()}
    hash_steps = sorted(set(entry["full_hashes"]) & set(hashes_now), key=int)
    same_hashes = all(entry["full_hashes"][s] == hashes_now[s] for s in hash_steps)
    if env["class_id"] != entry["environment_id"]:
        differences = {
            k: [entry["environment"].get(k), env["class"].get(k)]
            for k in sorted(set(entry["environment"]) | set(env["class"]))
            if entry["environment"].get(k) != env["class"].get(k)
        }
        norms = _leaf_norms(run_dir, entry["steps"])
        relative = {
            path: abs(norms.get(path, math.nan) - value) / max(abs(value), 1e-30)
            for path, value in entry["leaf_norms"].items()
        }
        worst = max(relative.values(), default=0.0)
        verdict = (
            "bitwise equal anyway"
            if comparison.agree and same_hashes
            else f"max relative leaf-norm distance {worst:.3g}"
        )
        return CheckResult(
            "lock",
            spec,
            plan.name,
            "skipped",
            f"different environment class ({', '.join(differences)}): bitwise equality not promised; {verdict}",
            comparison.compared,
            comparison.first_divergence,
            comparison.leaves,
            environment=differences,
            kind="cross_environment",
            seconds=seconds,
            distances=[
                {"path": p, "relative_norm_distance": d, "text": f"{p}: relative norm distance {d:.3g}"}
                for p, d in sorted(relative.items(), key=lambda item: -item[1])[:10]
            ],
        )
    if comparison.agree and same_hashes:
        return CheckResult(
            "lock",
            spec,
            plan.name,
            "passed",
            f"the locked bits reproduce: {len(comparison.compared)} ledger steps and {len(hash_steps)} full hashes",
            comparison.compared,
            seconds=seconds,
        )
    step = comparison.first_divergence if comparison.first_divergence is not None else int(hash_steps[0])
    return CheckResult(
        "lock",
        spec,
        plan.name,
        "failed",
        f"same trajectory and environment, different bits from step {step}: a regression",
        comparison.compared,
        step,
        comparison.leaves,
        kind="regression",
        seconds=seconds,
        likely_cause="code the trajectory fingerprint does not cover changed the computation "
        "(a dependency, or a helper a custom module imports), or the run is not deterministic",
    )


def verify_lock(lock_path: Path, workdir: Path, allow_imports: Sequence[str] = ()) -> list[CheckResult]:
    """Rerun every locked spec and compare with what the lock recorded."""
    try:
        document = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(f"{lock_path}: not a readable lockfile ({err})") from None
    if document.get("version") != LOCK_VERSION or not isinstance(document.get("entries"), list):
        raise RunError(f"{lock_path}: not an expspec lockfile of version {LOCK_VERSION}")
    folder = lock_path.resolve().parent
    return [
        _verify_entry(entry, folder, workdir / f"lock-{index}", allow_imports)
        for index, entry in enumerate(document["entries"])
    ]
