"""Lockfiles: recorded bits of each spec's first steps, for a CI reproducibility gate.

A lock entry holds the trajectory fingerprint, the inputs the bits depend on
(data, base weights, custom code), the environment class, and the ledger and
full hashes of a short run (its shape: `lock_document`). Verifying an entry
gathers evidence (the plan now, then a rerun) and lets the judge's lock part
(`lock_verdicts`) name one of five verdicts.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from expspec.compiler import Plan, plan_spec
from expspec.runtime.runs.run_files import Event, RunFiles
from expspec.spec import SpecError

from . import lock_verdicts as verdict
from .checks import SpecTarget, audit_request
from .constraints import LockConflict, constraints_text, install_command
from .ledger import Ledger, StepRecord, compare, read_ledger
from .localize import environment_difference
from .lock_document import LOCK_VERSION, LedgerStep, LockDocument, LockEntry
from .processes import RunError, run_exp
from .report import CheckResult

__all__ = ["LOCK_VERSION", "lock_constraints", "read_lock", "record_lock", "verify_lock"]

DEFAULT_STEPS = 20
_CODE = "code:"
_RUN_INPUTS = frozenset({"data", "base_weights", "base_checkpoint"})
"""Inputs a run records in its start event (`_run_inputs`), as opposed to those its plan fingerprints."""


def _leaf_norms(run_dir: Path, step: int) -> dict[str, float]:
    """L2 norm of every parameter and optimizer leaf: what a cross-environment
    comparison can still measure against a lock that holds no arrays."""
    import numpy as np

    from expspec.runtime.engine.hashing import canonical_leaves

    from .checkpoints import read_checkpoint

    state = read_checkpoint(RunFiles(run_dir).default_checkpoints, step).state
    leaves = canonical_leaves({k: state[k] for k in ("params", "opt") if k in state})
    return {path: float(np.linalg.norm(np.asarray(leaf, np.float64).ravel())) for path, leaf in leaves}


def _plan_inputs(plan: Plan) -> dict[str, str]:
    """The inputs the plan itself fingerprints: `code:<module>` for each custom code
    source, and each input file by its spec key (`data.tokenizer`)."""
    code = {f"{_CODE}{name}": digest for name, digest in plan.fingerprints.sources.items()}
    return {**code, **plan.fingerprints.files}


def _run_inputs(run_dir: Path) -> dict[str, str]:
    """Data and base-weight fingerprints from the run's first `start` event."""
    from expspec.runtime.runs.records import read_jsonl

    start = next((e for e in read_jsonl(RunFiles(run_dir).events) if e.get("event") == Event.START), None)
    if start is None:
        raise RunError(f"{run_dir}: the run recorded no start event, so its inputs are unknown")
    inputs = {"data": start.get("data"), "base_weights": start.get("base_weights")}
    base = start.get("base_checkpoint")
    if isinstance(base, dict):
        inputs["base_checkpoint"] = f"step {base.get('step')} {base.get('full_hash')}"
    return {key: str(value) for key, value in inputs.items() if value is not None}


def _run(target: SpecTarget, steps: int, run_dir: Path) -> tuple[Ledger, dict[str, Any], dict[str, str]]:
    run_exp(audit_request(target, run_dir, steps, max(1, steps // 2)))
    return read_ledger(run_dir), json.loads(RunFiles(run_dir).env.read_text()), _run_inputs(run_dir)


def _record(record: StepRecord) -> LedgerStep:
    return LedgerStep(params=record.params, opt=record.opt, leaves=record.leaves)


def record_lock(targets: Sequence[SpecTarget], steps: int | None, lock_path: Path, workdir: Path) -> LockDocument:
    """Run each spec for `steps` steps and return the lock document."""
    entries = []
    for index, target in enumerate(targets):
        plan = plan_spec(target.spec, list(target.overrides))
        n = min(steps or DEFAULT_STEPS, plan.spec.train.steps)
        run_dir = workdir / f"lock-{index}"
        ledger, env, inputs = _run(target, n, run_dir)
        entries.append(
            LockEntry(
                spec=Path(os.path.relpath(Path(target.spec).resolve(), lock_path.resolve().parent)).as_posix(),
                overrides=list(target.overrides),
                name=plan.name,
                steps=n,
                trajectory=plan.fingerprints.trajectory,
                spec_values=plan.field_values(),
                inputs=dict(sorted({**inputs, **_plan_inputs(plan)}.items())),
                environment=env["class"],
                environment_id=env["class_id"],
                full_hashes={str(s): h for s, h in sorted(ledger.checkpoints.items())},
                leaf_names=ledger.leaf_names,
                ledger={str(s): _record(r) for s, r in sorted(ledger.steps.items())},
                leaf_norms=_leaf_norms(run_dir, n),
            )
        )
    return LockDocument(
        version=LOCK_VERSION,
        recorded=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        steps=steps or DEFAULT_STEPS,
        entries=entries,
    )


def read_lock(lock_path: Path) -> LockDocument:
    """The lock document at `lock_path`; `RunError` (one line, naming the key) when it is not one of this version."""
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
    try:
        return LockDocument.model_validate(document)
    except ValidationError as err:
        problem = err.errors()[0]
        where = problem["loc"]
        if len(where) >= 2 and where[0] == "entries":
            key = ".".join(str(part) for part in where[2:]) or "entry"
            at = f"entry {where[1]} lacks a valid {key}"
        else:
            at = f"lacks a valid {'.'.join(str(part) for part in where)}"
        raise RunError(f"{lock_path}: {at} ({problem['msg']}); re-record it with `exp lock`") from None


def lock_constraints(document: LockDocument, lock_path: Path) -> str:
    """The pip constraints file of a lock document."""
    try:
        return constraints_text(document.to_dict(), lock_path.name)
    except LockConflict as err:
        raise RunError(f"{lock_path}: {err}") from None


def _rerecord(document: LockDocument, lock_path: Path, allow_imports: Sequence[str]) -> str:
    """The `exp lock` command, from the working directory, that records this lock again."""
    folder = os.path.dirname(str(lock_path))
    specs = [os.path.normpath(os.path.join(folder, e.spec)) for e in document.entries]
    steps = document.steps or max((e.steps for e in document.entries), default=DEFAULT_STEPS)
    allow = [arg for module in allow_imports for arg in ("--allow-import", module)]
    return shlex.join(["exp", "lock", *specs, *allow, "--steps", str(steps), "-o", str(lock_path)])


def _trajectory_changes(entry: LockEntry, plan: Plan) -> dict[str, list[Any]]:
    now = plan.field_values()
    then = entry.spec_values
    return {
        key: [then.get(key), now.get(key)]
        for key in sorted(set(now) | set(then))
        if plan.fields.get(key, "trajectory") == "trajectory" and then.get(key) != now.get(key)
    }


def _plan_evidence(entry: LockEntry, plan: Plan) -> verdict.PlanEvidence:
    # Every locked input but those a run records (data, base weights) is one the plan fingerprints.
    code_keys = {k for k in entry.inputs if k not in _RUN_INPUTS} | set(_plan_inputs(plan))
    return verdict.PlanEvidence(
        locked_trajectory=entry.trajectory,
        trajectory=plan.fingerprints.trajectory,
        changes=_trajectory_changes(entry, plan),
        code=verdict.input_differences(entry.inputs, _plan_inputs(plan), code_keys),
        has_records=bool(entry.ledger or entry.full_hashes),
    )


def _rerun_evidence(
    entry: LockEntry, target: SpecTarget, run_dir: Path, lock_path: Path, allow_other_environment: bool, t0: float
) -> verdict.RerunEvidence:
    ledger, env, inputs = _run(target, entry.steps, run_dir)
    locked = Ledger(leaf_names=entry.leaf_names)
    locked.steps = {int(s): StepRecord(int(s), r.params, r.opt, r.leaves, 0) for s, r in entry.ledger.items()}
    hashes_now = {str(s): h for s, h in ledger.checkpoints.items()}
    hash_steps = sorted(set(entry.full_hashes) & set(hashes_now), key=int)
    environment = environment_difference(entry.environment, env["class"])
    packages = [k.split(".", 1)[1] for k in environment if k.startswith("packages.")]
    run_keys = {k for k in set(entry.inputs) | set(inputs) if not k.startswith(_CODE)}
    return verdict.RerunEvidence(
        comparison=compare(locked, locked.steps, ledger.steps),
        locked_steps=sorted(locked.steps),
        rerun_steps=sorted(ledger.steps),
        hash_steps=hash_steps,
        differing_hashes=[int(s) for s in hash_steps if entry.full_hashes[s] != hashes_now[s]],
        environment=environment,
        install=install_command(lock_path, packages) if packages else None,
        inputs=verdict.input_differences(entry.inputs, inputs, run_keys),
        allow_other_environment=allow_other_environment,
        seconds=time.perf_counter() - t0,
    )


def _verify_entry(
    entry: LockEntry, folder: Path, run_dir: Path, lock_path: Path, rerecord: str, options: dict[str, Any]
) -> CheckResult:
    # Named as the user reaches it from here (the lock's folder as given); run by its absolute path.
    spec = os.path.normpath(os.path.join(os.path.dirname(str(lock_path)), entry.spec))
    t0 = time.perf_counter()
    target = SpecTarget(os.path.normpath(folder / entry.spec), tuple(entry.overrides), tuple(options["allow_imports"]))
    try:
        plan = plan_spec(target.spec, list(target.overrides))
    except SpecError as err:
        unloaded = verdict.LockCase(spec=spec, name=entry.name or spec, rerecord=rerecord)
        return verdict.spec_does_not_load(unloaded, err.problems[0])
    case = verdict.LockCase(spec=spec, name=plan.name, rerecord=rerecord)
    before = verdict.judge_plan(case, _plan_evidence(entry, plan))
    if before is not None:
        return before
    evidence = _rerun_evidence(entry, target, run_dir, lock_path, options["allow_other_environment"], t0)
    return verdict.judge_rerun(case, evidence)


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
        for index, entry in enumerate(document.entries)
    ]
