"""The audit's checks: determinism and resume (one schedule), segment, integrity.

Determinism and resume share their runs. Run A goes straight to step N; run B
stops at each cut point and is resumed in a new process, to N. B's first
attempt against A is determinism (two fresh runs); B's resumed attempts against
A are resume-equivalence. That costs 2N steps, not the 3N of separate checks.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from expspec.compiler import Plan, plan_spec
from expspec.runtime.runs.run_files import RunFiles

from .cuts import cut_interval, cut_points, resume_problem, resumed_at
from .judge import (
    LIVE_RETIRED,
    RECOVERED,
    UNRECORDED,
    AcrossEvidence,
    IntegrityEvidence,
    Localisation,
    ScheduleEvidence,
    SegmentEvidence,
    Side,
    judge_across,
    judge_integrity,
    judge_schedule,
    judge_segment,
    localised,
)
from .ledger import Ledger, StepComparison, StepRecord, compare, read_ledger
from .localize import environment_difference, leaf_distances_at
from .processes import KillMissed, RunError, RunRequest, run_exp, run_exp_killed, start_exp, stop_exp, wait_exp
from .report import CheckResult

__all__ = [
    "LIVE_RETIRED",
    "RECOVERED",
    "UNRECORDED",
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
        f'checkpoint.dir="{RunFiles(run_dir).default_checkpoints.as_posix()}"',
    ]


def audit_request(target: SpecTarget, run_dir: Path, stop_at: int, every: int) -> RunRequest:
    return RunRequest(
        spec=target.spec,
        run_dir=run_dir,
        overrides=(*target.overrides, *audit_overrides(run_dir, every)),
        stop_at=stop_at,
        allow_imports=target.allow_imports,
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
) -> CheckResult:
    """Rerun both sides to the diverging step and measure how far the leaves are apart."""
    step = max(1, result.first_divergence or 1)
    one, two = workdir / f"{result.check}-x1", workdir / f"{result.check}-x2"
    distances: list[dict[str, object]] = []
    problem = None
    try:
        first = start_exp(audit_request(target, one, step, every))
        try:
            if cut is not None and cut < step:
                run_exp(audit_request(target, two, cut, every))
            wait_exp(start_exp(audit_request(target, two, step, every)))
            wait_exp(first)
        finally:
            stop_exp(first)
        distances = leaf_distances_at(one, two, step, result.leaves)
    except RunError as err:
        problem = str(err)
    found = Localisation(
        distances=distances, rerun_problem=problem, environment=environment_difference(*sides), cut=cut
    )
    return localised(result, found)


KILL_TRIES = 3
"""Fresh tries at killing mid-training, when a kill landed after the next checkpoint committed."""


def _cut_and_resume(
    target: SpecTarget, workdir: Path, points: list[int], steps: int, every: int, kill: bool
) -> tuple[Path, dict[str, object]]:
    """Run B up to each cut (stopped there, or killed once the checkpoint at the cut has
    committed) and resume it: its directory, ready for the final attempt to `steps`,
    and how the kills went (for the report)."""
    missed: KillMissed | None = None
    for attempt in range(KILL_TRIES if kill else 1):
        b_dir = workdir / ("b" if attempt == 0 else f"b-try{attempt + 1}")
        resumed_from, killed_after = 0, []
        try:
            for point in points:
                if not kill:
                    run_exp(audit_request(target, b_dir, point, every))
                    continue
                request = audit_request(target, b_dir, steps, every)
                killed = run_exp_killed(request, point, RunFiles(b_dir).default_checkpoints, after=resumed_from)
                resumed_from = max(killed.committed)
                killed_after.append(killed.last_step)
            return b_dir, ({"killed_after_step": killed_after, "kill_tries": attempt + 1} if kill else {})
        except KillMissed as err:
            missed = err
            shutil.rmtree(b_dir, ignore_errors=True)
    raise RunError(f"{target.spec}: no kill landed between two checkpoints in {KILL_TRIES} tries; last: {missed}")


def audit_spec(target: SpecTarget, steps: int, cuts: int, kill: bool, workdir: Path) -> list[CheckResult]:
    """Determinism and resume-equivalence of a spec's first `steps` steps."""
    plan = plan_spec(target.spec, list(target.overrides))
    steps = min(steps, plan.spec.train.steps)
    points = cut_points(steps, cuts)
    # A killed run resumes from its last committed checkpoint: one on every cut, none
    # between two cuts. A stopped run saves at --stop-at and needs no other.
    every = cut_interval(steps, cuts) if kill else steps + 1
    a_dir = workdir / "a"
    t0 = time.perf_counter()
    straight = start_exp(audit_request(target, a_dir, steps, steps + 1))
    try:
        b_dir, kills = _cut_and_resume(target, workdir, points, steps, every, kill)
        final_b = run_exp(audit_request(target, b_dir, steps, every))
        final_a = wait_exp(straight)
    finally:
        stop_exp(straight)  # a run nobody waits for must not train on
    seconds = time.perf_counter() - t0

    a, b = read_ledger(a_dir), read_ledger(b_dir)
    # B's fresh attempts against A: determinism. B's resumed attempts: resume-equivalence.
    fresh = _with_conflicts(b, b.conflicts_of(fresh=True), compare(a, a.steps, b.records(fresh=True)))
    resumed = _with_conflicts(b, b.conflicts_of(fresh=False), compare(a, a.steps, b.records(fresh=False)))
    began = resumed_at(b_dir)
    problem = resume_problem(points, began, b_dir) if points else None
    determinism, resume = judge_schedule(
        ScheduleEvidence(
            target=target.spec,
            name=plan.name,
            steps=steps,
            cuts=tuple(points),
            kill=kill,
            fresh=fresh,
            resumed=resumed,
            sides=(
                Side(description="the uninterrupted run", steps=tuple(a.steps)),
                Side(description="the other fresh run", steps=tuple(b.records(fresh=True))),
                Side(description="the resumed attempts", steps=tuple(b.records(fresh=False))),
            ),
            final_hashes=((final_a.summary or {}).get("full_hash"), (final_b.summary or {}).get("full_hash")),
            resumed_at=tuple(began),
            resume_problem=problem,
            kills=kills,
            seconds=seconds,
        )
    )
    if determinism.status == "failed":
        determinism = _localize(determinism, target, workdir, every, None, (a_dir, b_dir))
    elif resume.status == "failed" and problem is None:
        cut = max((p for p in points if p < (resume.first_divergence or steps)), default=points[0])
        resume = _localize(resume, target, workdir, every, cut, (a_dir, b_dir))
    return [determinism, resume]


def audit_segment(
    run_dir: Path, start: int, end: int, workdir: Path, spec: str | None = None, allow_imports: Sequence[str] = ()
) -> CheckResult:
    """Restore `run_dir`'s checkpoint at `start`, rerun to `end`, compare with its own ledger."""
    from expspec.runtime.runs.rundir import RunDir

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
    shutil.copytree(source / str(start), RunFiles(segment).default_checkpoints / str(start))
    run_exp(audit_request(target, segment, end, end + 1))
    original, rerun = read_ledger(Path(run_dir)), read_ledger(segment)
    window = {s: r for s, r in original.steps.items() if start < s <= end}
    comparison = compare(original, window, rerun.steps)
    seconds = time.perf_counter() - t0
    environment = environment_difference(Path(run_dir), segment)
    if environment:  # another mesh or device count: measured, not judged
        from .across import measure_across

        distances, missing = measure_across(source, RunFiles(segment).default_checkpoints, end)
        return judge_across(
            AcrossEvidence(
                check="segment",
                target=str(run_dir),
                name=plan.name,
                comparison=comparison,
                environment=environment,
                step=end,
                distances=distances,
                missing=missing,
                seconds=seconds,
            )
        )
    sides = (
        Side(description=f"{run_dir} (its ledger)", steps=tuple(original.steps)),
        Side(description=f"the rerun from step {start}", steps=tuple(rerun.steps)),
    )
    evidence = SegmentEvidence(
        target=str(run_dir), name=plan.name, start=start, end=end, comparison=comparison, sides=sides, seconds=seconds
    )
    return judge_segment(evidence)


def _recorded_plan(run_dir: Path) -> Plan:
    """The plan `run_dir` was made with; a missing, unreadable, truncated plan.json, or
    one from another version, is bad input named by its path."""
    from expspec.runtime.runs.rundir import RunDir

    path = RunDir(run_dir).plan
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{run_dir}: no plan.json; is this a run directory?") from None
    except OSError as err:
        raise RunError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        json.loads(text)
    except ValueError as err:  # UnicodeDecodeError included
        raise RunError(f"{path}: not valid JSON, truncated or damaged ({err})") from None
    return Plan.from_json(text, file=str(path))  # a PlanError names what another version lacks


def audit_integrity(run_dir: Path, spec_dir: Path | None = None) -> CheckResult:
    """Every checkpoint restores to the full hash recorded when it was saved.

    Checkpoints a live run retires while they are read are counted, not judged; when
    that is every one of them the check is skipped, neither passed nor failed.
    """
    from expspec.runtime.runs.rundir import RunDir
    from expspec.runtime.runs.status import lock_holder

    from .checkpoints import survey_checkpoints

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    plan = _recorded_plan(run_dir)
    folder = spec_dir or Path(plan.source.file or ".").resolve().parent
    directory = RunDir(run_dir).checkpoints(plan, folder)
    ledger = read_ledger(run_dir)
    survey = survey_checkpoints(directory, ledger.checkpoints, lambda: lock_holder(run_dir) is not None)
    checked = sorted([*survey.verified, *survey.bad])
    return judge_integrity(
        IntegrityEvidence(
            target=str(run_dir),
            name=plan.name,
            checked=tuple(checked),
            bad=survey.bad,
            retired=tuple(survey.retired),
            # Said, never silent: a checkpoint without a ledger record was checked against its own metadata only.
            unrecorded=tuple(step for step in checked if step not in ledger.checkpoints),
            recovered=tuple(step for step in checked if step in ledger.recovered),
            seconds=time.perf_counter() - t0,
        )
    )
