"""The audit's checks: determinism and resume (one schedule), segment, integrity.

Determinism and resume share their runs. Run A goes straight to step N; run B
stops at each cut point and is resumed in a new process, to N. B's first
attempt against A is determinism (two fresh runs); B's resumed attempts against
A are resume-equivalence. That costs 2N steps, not the 3N of separate checks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exp.compiler import Plan, plan_spec

from .ledger import Ledger, StepComparison, StepRecord, compare, read_ledger
from .localize import environment_difference, leaf_distances_at, likely_cause
from .processes import RunError, RunRequest, run_exp, run_exp_killed, start_exp, wait_exp
from .report import CheckResult

__all__ = [
    "SpecTarget",
    "audit_integrity",
    "audit_segment",
    "audit_overrides",
    "audit_request",
    "audit_spec",
    "cut_points",
]


@dataclass(frozen=True)
class SpecTarget:
    spec: str
    overrides: tuple[str, ...] = ()
    allow_imports: tuple[str, ...] = ()


def audit_overrides(run_dir: Path, checkpoint_every: int) -> list[str]:
    """Operational settings of every audit run: a ledger record per step, no
    evaluation, checkpoints on and inside the audit's own directory."""
    return [
        "train.ledger_every=1",
        "train.eval_every=0",
        "checkpoint.enabled=true",
        f"checkpoint.every_steps={checkpoint_every}",
        f'checkpoint.dir="{(run_dir / "checkpoints").as_posix()}"',
    ]


def cut_points(steps: int, cuts: int) -> list[int]:
    """Evenly spaced steps strictly inside (0, steps)."""
    points = sorted({round(i * steps / (cuts + 1)) for i in range(1, cuts + 1)})
    return [p for p in points if 0 < p < steps]


def audit_request(target: SpecTarget, run_dir: Path, stop_at: int, every: int) -> RunRequest:
    return RunRequest(
        spec=target.spec,
        run_dir=run_dir,
        overrides=(*target.overrides, *audit_overrides(run_dir, every)),
        stop_at=stop_at,
        allow_imports=target.allow_imports,
    )


def _result(
    check: str, target: SpecTarget, plan: Plan, comparison: StepComparison, seconds: float, **extra: object
) -> CheckResult:
    what = {"determinism": "two fresh runs", "resume": "the resumed run and the uninterrupted run"}.get(check, check)
    if not comparison.compared:
        return CheckResult(check, target.spec, plan.name, "error", f"{check}: no steps to compare", seconds=seconds)
    if comparison.agree:
        summary = f"{what} agree bitwise at all {len(comparison.compared)} compared steps"
        return CheckResult(check, target.spec, plan.name, "passed", summary, comparison.compared, seconds=seconds)
    step = comparison.first_divergence
    summary = f"{what} diverge at step {step} in {len(comparison.leaves)} leaves"
    return CheckResult(
        check,
        target.spec,
        plan.name,
        "failed",
        summary,
        comparison.compared,
        step,
        comparison.leaves,
        seconds=seconds,
        **extra,  # type: ignore[arg-type]
    )


def _with_conflicts(
    ledger: Ledger, conflicts: dict[int, tuple[StepRecord, StepRecord]], comparison: StepComparison
) -> StepComparison:
    """A step one run directory recorded twice with different bits is a divergence too."""
    if not conflicts:
        return comparison
    step = min(conflicts)
    if comparison.first_divergence is not None and comparison.first_divergence <= step:
        return comparison
    earlier, later = conflicts[step]
    return StepComparison(comparison.compared, step, ledger.differing_leaves(earlier, later))


def _localize(
    result: CheckResult, target: SpecTarget, workdir: Path, every: int, cut: int | None, sides: tuple[Path, Path]
) -> None:
    """Rerun both sides to the diverging step and measure how far the leaves are apart."""
    step = max(1, result.first_divergence or 1)
    one, two = workdir / f"{result.check}-x1", workdir / f"{result.check}-x2"
    try:
        first = start_exp(audit_request(target, one, step, every))
        if cut is not None and cut < step:
            run_exp(audit_request(target, two, cut, every))
        wait_exp(start_exp(audit_request(target, two, step, every)))
        wait_exp(first)
        result.distances = leaf_distances_at(one, two, step, result.leaves)
        if result.first_divergence == 0:
            result.details["distances_after_step"] = 1
    except RunError as err:
        result.details["localisation"] = f"could not rerun both sides: {err}"
    result.environment = environment_difference(*sides) or None
    result.likely_cause = likely_cause(result.check, result.first_divergence, cut, result.environment)


def audit_spec(target: SpecTarget, steps: int, cuts: int, kill: bool, workdir: Path) -> list[CheckResult]:
    """Determinism and resume-equivalence of a spec's first `steps` steps."""
    plan = plan_spec(target.spec, list(target.overrides))
    steps = min(steps, plan.spec.train.steps)
    points = cut_points(steps, cuts)
    if not points:
        raise RunError(f"{target.spec}: {steps} steps leave no room for a cut; audit at least 2 steps")
    # Killed runs resume from their last checkpoint, so checkpoint often enough to land before each cut.
    every = max(1, points[0] // 2) if kill else steps + 1
    a_dir, b_dir = workdir / "a", workdir / "b"
    t0 = time.perf_counter()
    straight = start_exp(audit_request(target, a_dir, steps, every))
    for point in points:
        if kill:
            run_exp_killed(audit_request(target, b_dir, steps, every), point)
        else:
            run_exp(audit_request(target, b_dir, point, every))
    final_b = run_exp(audit_request(target, b_dir, steps, every))
    final_a = wait_exp(straight)
    seconds = time.perf_counter() - t0

    a, b = read_ledger(a_dir), read_ledger(b_dir)
    # B's fresh attempts against A: determinism. B's resumed attempts: resume-equivalence.
    fresh = _with_conflicts(b, b.conflicts_of(fresh=True), compare(a, a.steps, b.records(fresh=True)))
    resumed = _with_conflicts(b, b.conflicts_of(fresh=False), compare(a, a.steps, b.records(fresh=False)))
    determinism = _result("determinism", target, plan, fresh, seconds / 2)
    resume = _result("resume", target, plan, resumed, seconds / 2)
    hashes = (final_a.summary or {}).get("full_hash"), (final_b.summary or {}).get("full_hash")
    resume.details["final_full_hashes"] = list(hashes)
    if resume.status == "passed" and hashes[0] != hashes[1]:
        resume.status, resume.summary = "failed", f"final full hashes differ at step {steps}"
    for result in (determinism, resume):
        result.details.update({"steps": steps, "cuts": points, "kill": kill})
    if determinism.status == "failed":
        _localize(determinism, target, workdir, every, None, (a_dir, b_dir))
        if resume.status == "failed":
            resume.status = "skipped"
            resume.summary = "not meaningful: two fresh runs already differ (see determinism)"
    elif resume.status == "failed":
        cut = max((p for p in points if p < (resume.first_divergence or steps)), default=points[0])
        _localize(resume, target, workdir, every, cut, (a_dir, b_dir))
    return [determinism, resume]


def audit_segment(
    run_dir: Path, start: int, end: int, workdir: Path, spec: str | None = None, allow_imports: Sequence[str] = ()
) -> CheckResult:
    """Restore `run_dir`'s checkpoint at `start`, rerun to `end`, compare with its own ledger."""
    from exp.runtime.rundir import RunDir

    from .checkpoints import checkpoint_steps

    t0 = time.perf_counter()
    rundir = RunDir(Path(run_dir))
    plan = rundir.recorded_plan()
    if plan is None:
        raise RunError(f"{run_dir}: no plan.json; is this a run directory?")
    spec = spec or plan.source.file
    if spec is None or not Path(spec).is_file():
        raise RunError(f"{run_dir}: its spec {spec!r} is not here; pass --spec")
    target = SpecTarget(spec, tuple(plan.source.overrides), tuple(allow_imports))
    again = plan_spec(spec, list(target.overrides))
    if again.fingerprints.trajectory != plan.fingerprints.trajectory:
        raise RunError(f"{spec} no longer compiles to the trajectory of {run_dir}; pass the spec it was run with")
    source = rundir.checkpoints(plan, Path(spec).resolve().parent)
    available = checkpoint_steps(source)
    if start not in available:
        raise RunError(f"{run_dir}: no checkpoint at step {start} (checkpoints: {available or 'none'})")
    segment = workdir / "segment"
    shutil.copytree(source / str(start), segment / "checkpoints" / str(start))
    run_exp(audit_request(target, segment, end, end + 1))
    original, rerun = read_ledger(Path(run_dir)), read_ledger(segment)
    window = {s: r for s, r in original.steps.items() if start < s <= end}
    comparison = compare(original, window, rerun.steps)
    environment = environment_difference(Path(run_dir), segment)
    if environment:  # another mesh or device count: measured, not judged
        from .across import cross_environment_result

        return cross_environment_result(
            "segment",
            str(run_dir),
            plan.name,
            comparison,
            environment,
            (source, segment / "checkpoints"),
            end,
            time.perf_counter() - t0,
        )
    result = _result("segment", target, plan, comparison, time.perf_counter() - t0)
    result.target = str(run_dir)
    result.details.update({"segment": [start, end]})
    if result.status == "passed":
        result.summary = (
            f"steps {start + 1}..{end} reproduce the run's ledger bitwise ({len(comparison.compared)} steps)"
        )
    elif result.status == "failed":
        result.summary = f"the rerun from step {start} parts from the run's ledger at step {result.first_divergence}"
        result.environment = environment_difference(Path(run_dir), segment) or None
        result.likely_cause = likely_cause("segment", result.first_divergence, start, result.environment)
    return result


def audit_integrity(run_dir: Path, spec_dir: Path | None = None) -> CheckResult:
    """Every checkpoint restores to the full hash recorded when it was saved."""
    from exp.runtime.hashing import full_hash
    from exp.runtime.rundir import RunDir

    from .checkpoints import CheckpointUnreadable, checkpoint_steps, read_checkpoint

    t0 = time.perf_counter()
    rundir = RunDir(Path(run_dir))
    plan = rundir.recorded_plan()
    if plan is None:
        raise RunError(f"{run_dir}: no plan.json; is this a run directory?")
    folder = spec_dir or Path(plan.source.file or ".").resolve().parent
    directory = rundir.checkpoints(plan, folder)
    ledger = read_ledger(Path(run_dir))
    steps = checkpoint_steps(directory)
    bad: dict[int, str] = {}
    for step in steps:
        try:
            saved = read_checkpoint(directory, step)
        except CheckpointUnreadable as err:
            bad[step] = f"unreadable: {err}"
            continue
        digest = full_hash(saved.state)
        recorded = ledger.checkpoints.get(step, saved.meta.get("full_hash"))
        if digest != recorded or digest != saved.meta.get("full_hash"):
            bad[step] = f"restores to {digest[:12]}, recorded {str(recorded)[:12]}"
    seconds = time.perf_counter() - t0
    if not steps:
        return CheckResult("integrity", str(run_dir), plan.name, "error", "no checkpoints to check", seconds=seconds)
    if bad:
        first = min(bad)
        result = CheckResult(
            "integrity",
            str(run_dir),
            plan.name,
            "failed",
            f"{len(bad)} of {len(steps)} checkpoints do not restore to their recorded hash (first: step {first})",
            steps,
            first,
            seconds=seconds,
            details={"bad": {str(k): v for k, v in bad.items()}},
        )
        result.likely_cause = "checkpoint files changed on disk after they were written (corruption or tampering)"
        return result
    summary = f"all {len(steps)} checkpoints restore to the hash recorded when they were saved"
    return CheckResult("integrity", str(run_dir), plan.name, "passed", summary, steps, seconds=seconds)
