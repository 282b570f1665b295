"""Lockfiles: recorded bits of each spec's first steps, for a CI reproducibility gate.

A lock entry holds the trajectory fingerprint, the inputs the bits depend on
(data, base weights, custom code), the environment class, and the ledger and
full hashes of a short run. Verifying it names one of five verdicts (see
`lock_verdicts`), checked in the order that lets each one be trusted: the
trajectory, the code, then (after a rerun) the environment, the data and base
weights the rerun read, and only with all of those equal, the bits.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exp.compiler import Plan, plan_spec
from exp.spec import SpecError

from . import lock_verdicts as verdict
from .checks import SpecTarget, audit_request
from .constraints import LockConflict, constraints_text, install_command
from .ledger import Ledger, StepRecord, compare, read_ledger
from .processes import RunError, run_exp
from .report import CheckResult

__all__ = ["LOCK_VERSION", "lock_constraints", "read_lock", "record_lock", "verify_lock"]

LOCK_VERSION = 2
DEFAULT_STEPS = 20
_CODE = "code:"
_ENTRY = {
    "spec": str,
    "steps": int,
    "trajectory": str,
    "inputs": dict,
    "environment": dict,
    "full_hashes": dict,
    "leaf_names": list,
    "ledger": dict,
    "leaf_norms": dict,
}
"""The keys every lock entry holds, and their JSON types."""


def _leaf_norms(run_dir: Path, step: int) -> dict[str, float]:
    """L2 norm of every parameter and optimizer leaf: what a cross-environment
    comparison can still measure against a lock that holds no arrays."""
    import numpy as np

    from exp.runtime.hashing import canonical_leaves

    from .checkpoints import read_checkpoint

    state = read_checkpoint(run_dir / "checkpoints", step).state
    leaves = canonical_leaves({k: state[k] for k in ("params", "opt") if k in state})
    return {path: float(np.linalg.norm(np.asarray(leaf, np.float64).ravel())) for path, leaf in leaves}


def _code_inputs(plan: Plan) -> dict[str, str]:
    """`code:<module>` -> fingerprint of each custom code source the plan hashed."""
    return {f"{_CODE}{name}": digest for name, digest in plan.fingerprints.sources.items()}


def _run_inputs(run_dir: Path) -> dict[str, str]:
    """Data and base-weight fingerprints from the run's first `start` event."""
    from exp.runtime.records import read_jsonl
    from exp.runtime.rundir import RunDir

    start = next((e for e in read_jsonl(RunDir(run_dir).events) if e.get("event") == "start"), None)
    if start is None:
        raise RunError(f"{run_dir}: the run recorded no start event, so its inputs are unknown")
    inputs = {"data": start.get("data"), "base_weights": start.get("base_weights")}
    base = start.get("base_checkpoint")
    if isinstance(base, dict):
        inputs["base_checkpoint"] = f"step {base.get('step')} {base.get('full_hash')}"
    return {key: str(value) for key, value in inputs.items() if value is not None}


def _run(target: SpecTarget, steps: int, run_dir: Path) -> tuple[Ledger, dict[str, Any], dict[str, str]]:
    run_exp(audit_request(target, run_dir, steps, max(1, steps // 2)))
    return read_ledger(run_dir), json.loads((run_dir / "env.json").read_text()), _run_inputs(run_dir)


def _record(record: StepRecord) -> dict[str, str]:
    return {"params": record.params, "opt": record.opt, "leaves": record.leaves}


def record_lock(targets: Sequence[SpecTarget], steps: int | None, lock_path: Path, workdir: Path) -> dict[str, Any]:
    """Run each spec for `steps` steps and return the lock document."""
    entries = []
    for index, target in enumerate(targets):
        plan = plan_spec(target.spec, list(target.overrides))
        n = min(steps or DEFAULT_STEPS, plan.spec.train.steps)
        run_dir = workdir / f"lock-{index}"
        ledger, env, inputs = _run(target, n, run_dir)
        entries.append(
            {
                "spec": Path(os.path.relpath(Path(target.spec).resolve(), lock_path.resolve().parent)).as_posix(),
                "overrides": list(target.overrides),
                "name": plan.name,
                "steps": n,
                "trajectory": plan.fingerprints.trajectory,
                "spec_values": plan.field_values(),
                "inputs": dict(sorted({**inputs, **_code_inputs(plan)}.items())),
                "environment": env["class"],
                "environment_id": env["class_id"],
                "full_hashes": {str(s): h for s, h in sorted(ledger.checkpoints.items())},
                "leaf_names": ledger.leaf_names,
                "ledger": {str(s): _record(r) for s, r in sorted(ledger.steps.items())},
                "leaf_norms": _leaf_norms(run_dir, n),
            }
        )
    return {
        "version": LOCK_VERSION,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": steps or DEFAULT_STEPS,
        "entries": entries,
    }


def read_lock(lock_path: Path) -> dict[str, Any]:
    """The lock document at `lock_path`; `RunError` (one line) when it is not one of this version."""
    try:
        document = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(f"{lock_path}: not a readable lockfile ({err})") from None
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise RunError(f"{lock_path}: not an expspec lockfile")
    if document.get("version") != LOCK_VERSION:
        raise RunError(
            f"{lock_path}: a lockfile of version {document.get('version')}, this expspec reads version "
            f"{LOCK_VERSION}; re-record it with `exp lock`"
        )
    for index, entry in enumerate(document["entries"]):
        wrong = [
            key for key, kind in _ENTRY.items() if not isinstance(entry, dict) or not isinstance(entry.get(key), kind)
        ]
        if wrong:
            raise RunError(f"{lock_path}: entry {index} lacks a valid {', '.join(wrong)}; re-record it with `exp lock`")
    return document


def lock_constraints(document: dict[str, Any], lock_path: Path) -> str:
    """The pip constraints file of a lock document."""
    try:
        return constraints_text(document, lock_path.name)
    except LockConflict as err:
        raise RunError(f"{lock_path}: {err}") from None


def _rerecord(document: dict[str, Any], lock_path: Path, allow_imports: Sequence[str]) -> str:
    """The `exp lock` command, from the working directory, that records this lock again."""
    folder = os.path.dirname(str(lock_path))
    specs = [os.path.normpath(os.path.join(folder, e["spec"])) for e in document["entries"]]
    steps = document.get("steps") or max((e.get("steps", DEFAULT_STEPS) for e in document["entries"]), default=20)
    allow = [arg for module in allow_imports for arg in ("--allow-import", module)]
    return shlex.join(["exp", "lock", *specs, *allow, "--steps", str(steps), "-o", str(lock_path)])


def _trajectory_changes(entry: dict[str, Any], plan: Plan) -> dict[str, list[Any]]:
    now = plan.field_values()
    then = entry.get("spec_values", {})
    return {
        key: [then.get(key), now.get(key)]
        for key in sorted(set(now) | set(then))
        if plan.fields.get(key, "trajectory") == "trajectory" and then.get(key) != now.get(key)
    }


def _distances(run_dir: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    norms = _leaf_norms(run_dir, entry["steps"])
    relative = {
        path: abs(norms.get(path, math.nan) - value) / max(abs(value), 1e-30)
        for path, value in entry["leaf_norms"].items()
    }
    return [
        {"path": p, "relative_norm_distance": d, "text": f"{p}: relative norm distance {d:.3g}"}
        for p, d in sorted(relative.items(), key=lambda item: -item[1])[:10]
    ]


def _verify_entry(
    entry: dict[str, Any], folder: Path, run_dir: Path, lock_path: Path, rerecord: str, options: dict[str, Any]
) -> CheckResult:
    # Named as the user reaches it from here (the lock's folder as given); run by its absolute path.
    spec = os.path.normpath(os.path.join(os.path.dirname(str(lock_path)), entry["spec"]))
    t0 = time.perf_counter()
    target = SpecTarget(
        os.path.normpath(folder / entry["spec"]), tuple(entry.get("overrides", ())), tuple(options["allow_imports"])
    )
    case = verdict.LockCase(spec, entry.get("name", spec), rerecord)
    try:
        plan = plan_spec(target.spec, list(target.overrides))
    except SpecError as err:
        return case.result("error", f"the spec does not load: {err.problems[0]}")
    case = verdict.LockCase(spec, plan.name, rerecord)
    locked_inputs: dict[str, Any] = entry.get("inputs", {})
    if plan.fingerprints.trajectory != entry["trajectory"]:
        changes = _trajectory_changes(entry, plan)
        code_keys = {k for k in locked_inputs if k.startswith(_CODE)} | set(_code_inputs(plan))
        code = verdict.input_differences(locked_inputs, _code_inputs(plan), code_keys)
        if code and not changes:
            return verdict.input_changed(case, code)
        return verdict.trajectory_changed(case, changes, entry["trajectory"], plan.fingerprints.trajectory)
    if not entry.get("ledger") and not entry.get("full_hashes"):
        return verdict.not_compared(case, "the lock entry records no ledger steps or full hashes; re-record it")
    ledger, env, inputs = _run(target, entry["steps"], run_dir)
    seconds = time.perf_counter() - t0
    locked = Ledger(leaf_names=entry["leaf_names"])
    locked.steps = {
        int(s): StepRecord(int(s), r["params"], r["opt"], r["leaves"], 0) for s, r in entry["ledger"].items()
    }
    comparison = compare(locked, locked.steps, ledger.steps)
    hashes_now = {str(s): h for s, h in ledger.checkpoints.items()}
    hash_steps = sorted(set(entry["full_hashes"]) & set(hashes_now), key=int)
    equal_bits = comparison.agree and all(entry["full_hashes"][s] == hashes_now[s] for s in hash_steps)
    if not comparison.compared and not hash_steps:
        why = f"the lock holds steps {sorted(locked.steps)}, the rerun recorded {sorted(ledger.steps)}"
        return verdict.not_compared(case, why, seconds)
    # Another environment can change what the inputs read (a library's bundled data), so it is named first.
    environment = verdict.environment_differences(entry["environment"], env["class"])
    if environment and not options["allow_other_environment"]:
        packages = [k.split(".", 1)[1] for k in environment if k.startswith("packages.")]
        return verdict.environment_changed(
            case,
            environment,
            install_command(lock_path, packages) if packages else None,
            allowed=False,
            equal_bits=equal_bits,
            distances=[] if equal_bits else _distances(run_dir, entry),
            comparison=comparison,
            seconds=seconds,
        )
    run_keys = {k for k in set(locked_inputs) | set(inputs) if not k.startswith(_CODE)}
    changed = verdict.input_differences(locked_inputs, inputs, run_keys)
    if changed:
        return verdict.input_changed(case, changed, seconds)
    if environment:
        return verdict.environment_changed(
            case,
            environment,
            None,
            allowed=True,
            equal_bits=equal_bits,
            distances=[] if equal_bits else _distances(run_dir, entry),
            comparison=comparison,
            seconds=seconds,
        )
    if equal_bits:
        return verdict.reproduced(case, comparison, len(hash_steps), seconds)
    step = comparison.first_divergence
    if step is None:
        step = next(int(s) for s in hash_steps if entry["full_hashes"][s] != hashes_now[s])
    return verdict.regression(case, comparison, step, seconds)


def verify_lock(
    lock_path: Path, workdir: Path, allow_imports: Sequence[str] = (), *, allow_other_environment: bool = False
) -> list[CheckResult]:
    """Rerun every locked spec and name one verdict per entry (see `lock_verdicts`)."""
    document = read_lock(lock_path)
    folder = lock_path.resolve().parent
    rerecord = _rerecord(document, lock_path, allow_imports)
    options = {"allow_imports": tuple(allow_imports), "allow_other_environment": allow_other_environment}
    return [
        _verify_entry(entry, folder, workdir / f"lock-{index}", lock_path, rerecord, options)
        for index, entry in enumerate(document["entries"])
    ]
