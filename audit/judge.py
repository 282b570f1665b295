"""Where the audit decides a verdict: evidence in, a frozen `CheckResult` out.

The checks (`checks`, `lockfile`) run things and gather evidence: what was
compared, where it first parted, how far apart the leaves are, what differs in
the environment. Every rule that turns evidence into passed, failed, skipped or
error, and every summary a person reads, is here (the lock's five verdicts in
`lock_verdicts`, its part of this module). The functions are pure: they read
no files and start no runs, so each rule can be read, and tested, on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .cuts import describe_steps
from .ledger import StepComparison
from .report import CheckResult

__all__ = [
    "LIVE_RETIRED",
    "RECOVERED",
    "UNRECORDED",
    "AcrossEvidence",
    "IntegrityEvidence",
    "Localisation",
    "ScheduleEvidence",
    "SegmentEvidence",
    "Side",
    "could_not_run",
    "distance_text",
    "judge_across",
    "judge_integrity",
    "judge_schedule",
    "judge_segment",
    "likely_cause",
    "localised",
]

LIVE_RETIRED = "retired_while_reading"
"""Detail of an integrity result: steps a live run retired while the audit read them."""
UNRECORDED = "without_ledger_record"
"""Detail of an integrity result: checkpoints the ledger has no record of, checked against their own metadata."""
RECOVERED = "recovered_records"
"""Detail of an integrity result: checkpoints whose ledger record a later attempt recovered from their metadata."""


@dataclass(frozen=True, kw_only=True)
class Side:
    """One side of a comparison: how a reader knows it, and the steps it recorded."""

    description: str
    steps: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ScheduleEvidence:
    """What the determinism-and-resume schedule (run A straight, run B cut and resumed) found."""

    target: str
    name: str
    steps: int
    cuts: tuple[int, ...]
    kill: bool
    fresh: StepComparison
    """A against B's fresh attempts."""
    resumed: StepComparison
    """A against B's resumed attempts."""
    sides: tuple[Side, Side, Side]
    """The uninterrupted run, B's fresh attempts, B's resumed attempts."""
    final_hashes: tuple[str | None, str | None]
    resumed_at: tuple[int, ...]
    resume_problem: str | None
    """Why the resumed attempts prove no resumption (see `cuts.resume_problem`), or None."""
    kills: dict[str, Any] = field(default_factory=dict)
    seconds: float


@dataclass(frozen=True, kw_only=True)
class Localisation:
    """Both sides rerun to the diverging step: how far the leaves are apart there."""

    distances: list[dict[str, Any]] = field(default_factory=list)
    rerun_problem: str | None = None
    """Why the sides could not be rerun (then no distances)."""
    environment: dict[str, Any] = field(default_factory=dict)
    cut: int | None = None
    """The step the resumed side restored, if it did."""


@dataclass(frozen=True, kw_only=True)
class AcrossEvidence:
    """Two sides from different environment classes, and their distance at one step."""

    check: str
    target: str
    name: str
    comparison: StepComparison
    environment: dict[str, Any]
    step: int
    distances: list[dict[str, Any]]
    missing: str | None
    """Why no distance was measured, or None."""
    seconds: float


@dataclass(frozen=True, kw_only=True)
class SegmentEvidence:
    """A run's checkpoint at `start` rerun to `end`, against the run's own ledger."""

    target: str
    name: str
    start: int
    end: int
    comparison: StepComparison
    sides: tuple[Side, Side]
    seconds: float


@dataclass(frozen=True, kw_only=True)
class IntegrityEvidence:
    """Every checkpoint of a run directory read back against its recorded hash."""

    target: str
    name: str
    checked: tuple[int, ...]
    bad: dict[int, Any]
    retired: tuple[int, ...]
    unrecorded: tuple[int, ...]
    recovered: tuple[int, ...]
    seconds: float


def could_not_run(check: str, target: str, name: str, message: str) -> CheckResult:
    """Not a verdict: the check could not be made (bad input, or a run that failed)."""
    return CheckResult(check=check, target=target, name=name, status="error", summary=message)


def _compared(
    check: str, target: str, name: str, comparison: StepComparison, sides: Sequence[Side], **extra: Any
) -> CheckResult:
    """Agree, diverge, or (nothing compared) an error naming what each side holds."""
    what = {"determinism": "two fresh runs", "resume": "the resumed run and the uninterrupted run"}.get(check, check)
    base = {"check": check, "target": target, "name": name, **extra}
    if not comparison.compared:
        why = "; ".join(f"{side.description} recorded {describe_steps(side.steps)}" for side in sides)
        return CheckResult(
            status="error", summary=f"{check}: no steps to compare" + (f": {why}" if why else ""), **base
        )
    if comparison.agree:
        summary = f"{what} agree bitwise at all {len(comparison.compared)} compared steps"
        return CheckResult(status="passed", summary=summary, compared_steps=comparison.compared, **base)
    return CheckResult(
        status="failed",
        summary=f"{what} diverge at step {comparison.first_divergence} in {len(comparison.leaves)} leaves",
        compared_steps=comparison.compared,
        first_divergence=comparison.first_divergence,
        leaves=comparison.leaves,
        **base,
    )


def judge_schedule(e: ScheduleEvidence) -> tuple[CheckResult, CheckResult]:
    """Determinism (B's fresh attempts against A) and resume-equivalence (B's resumed ones)."""
    shared = {"steps": e.steps, "cuts": list(e.cuts), "kill": e.kill}
    straight, fresh, resumed = e.sides
    determinism = _compared(
        "determinism", e.target, e.name, e.fresh, (straight, fresh), seconds=e.seconds / 2, details=shared
    )
    resume_details = {**shared, "final_full_hashes": list(e.final_hashes), "resumed_at": list(e.resumed_at), **e.kills}
    resume = _compared(
        "resume", e.target, e.name, e.resumed, (straight, resumed), seconds=e.seconds / 2, details=resume_details
    )
    if not e.cuts:
        summary = f"the run audited here is {e.steps} step long: no step to cut at before its end"
        return determinism, replace(resume, status="skipped", compared_steps=[], summary=summary)
    if e.resume_problem is not None:
        resume = replace(resume, status="failed", summary=f"resume not exercised: {e.resume_problem}")
    elif resume.status == "passed" and e.final_hashes[0] != e.final_hashes[1]:
        resume = replace(resume, status="failed", summary=f"final full hashes differ at step {e.steps}")
    if determinism.status == "failed" and resume.status == "failed":
        summary = "not meaningful: two fresh runs already differ (see determinism)"
        resume = replace(resume, status="skipped", summary=summary)
    return determinism, resume


def localised(result: CheckResult, found: Localisation) -> CheckResult:
    """`result` with how far its leaves are apart and what most likely caused the divergence."""
    details = dict(result.details)
    if found.rerun_problem is not None:
        details["localisation"] = f"could not rerun both sides: {found.rerun_problem}"
    elif result.first_divergence == 0:
        details["distances_after_step"] = 1
    environment = found.environment or None
    return replace(
        result,
        distances=found.distances,
        environment=environment,
        likely_cause=likely_cause(result.check, result.first_divergence, found.cut, environment),
        details=details,
    )


def judge_segment(e: SegmentEvidence) -> CheckResult:
    """The rerun from a checkpoint reproduces the run's own ledger, or where it parts."""
    result = _compared(
        "segment", e.target, e.name, e.comparison, e.sides, seconds=e.seconds, details={"segment": [e.start, e.end]}
    )
    if result.status == "passed":
        summary = (
            f"steps {e.start + 1}..{e.end} reproduce the run's ledger bitwise ({len(e.comparison.compared)} steps)"
        )
        return replace(result, summary=summary)
    if result.status == "failed":
        step = result.first_divergence
        return replace(
            result,
            summary=f"the rerun from step {e.start} parts from the run's ledger at step {step}",
            likely_cause=likely_cause("segment", step, e.start, None),
        )
    return result


def distance_text(
    equal: bool, comparison: StepComparison, distances: Sequence[dict[str, Any]], missing: str | None, step: int
) -> str:
    """How far apart two sides from different environment classes are: the one measure,
    max ULP distance per leaf, from both sides' arrays at `step`."""
    parted = f"ledgers part at step {comparison.first_divergence}" if comparison.first_divergence is not None else ""
    if equal:
        return "bitwise equal anyway"
    if missing:
        return f"no distance measured ({missing})" + (f"; {parted}" if parted else "")
    worst = max((d["max_ulp"] for d in distances), default=0)
    largest = max((d["max_abs"] for d in distances), default=0.0)
    text = f"at step {step}: max {worst} ulp, max |Δ| {largest:.3g}, in {len(distances)} leaves"
    return text + (f"; {parted}" if parted else "")


def judge_across(e: AcrossEvidence) -> CheckResult:
    """Not a failure: bitwise equality is promised only within one environment class."""
    bits = distance_text(e.comparison.agree, e.comparison, e.distances, e.missing, e.step)
    return CheckResult(
        check=e.check,
        target=e.target,
        name=e.name,
        status="skipped",
        summary=f"different environment class ({', '.join(e.environment)}): bitwise equality not promised; {bits}",
        compared_steps=e.comparison.compared,
        first_divergence=e.comparison.first_divergence,
        leaves=e.comparison.leaves,
        distances=e.distances,
        environment=e.environment,
        kind="cross_environment",
        seconds=e.seconds,
        details={"distance_step": e.step, "max_ulp": max((d["max_ulp"] for d in e.distances), default=None)},
    )


def _also(retired: Sequence[int], unrecorded: Iterable[int], recovered: Iterable[int]) -> str:
    unrecorded, recovered = list(unrecorded), list(recovered)
    also = f"; {len(retired)} more retired by the run while being read" if retired else ""
    if unrecorded:
        also += (
            f"; {len(unrecorded)} without a ledger record (checked against their own metadata only: "
            f"{describe_steps(unrecorded)})"
        )
    if recovered:
        also += f"; {len(recovered)} recorded from their own metadata after a kill ({describe_steps(recovered)})"
    return also


def judge_integrity(e: IntegrityEvidence) -> CheckResult:
    """Checkpoints a live run retired while they were read are counted, not judged;
    when that is every one of them the check is skipped, neither passed nor failed."""
    details: dict[str, Any] = {LIVE_RETIRED: list(e.retired)} if e.retired else {}
    if e.unrecorded:
        details[UNRECORDED] = list(e.unrecorded)
    if e.recovered:
        details[RECOVERED] = list(e.recovered)
    checked = list(e.checked)
    base = {"check": "integrity", "target": e.target, "name": e.name, "compared_steps": checked, "seconds": e.seconds}
    if not checked and e.retired:
        summary = f"run is live: checkpoints retired while reading (all {len(e.retired)})"
        return CheckResult(status="skipped", summary=summary, details=details, **base)
    if not checked:
        return CheckResult(status="error", summary="no checkpoints to check", **base)
    also = _also(e.retired, e.unrecorded, e.recovered)
    if e.bad:
        first = min(e.bad)
        return CheckResult(
            status="failed",
            summary=f"{len(e.bad)} of {len(checked)} checkpoints do not restore to their recorded hash "
            f"(first: step {first}){also}",
            first_divergence=first,
            details={"bad": {str(k): v for k, v in e.bad.items()}, **details},
            likely_cause="checkpoint files changed on disk after they were written (corruption or tampering)",
            **base,
        )
    summary = (
        "the one checkpoint restores to the hash recorded when it was saved"
        if len(checked) == 1
        else f"all {len(checked)} checkpoints restore to the hash recorded when they were saved"
    )
    return CheckResult(status="passed", summary=summary + also, details=details, **base)


def likely_cause(check: str, step: int | None, cut: int | None, environment: dict[str, Any] | None) -> str:
    """A one-line diagnosis from where the divergence happened."""
    if environment:
        return f"the two sides ran in different environments ({', '.join(environment)}); bits may differ there"
    if check == "determinism":
        if step == 0:
            return (
                "the initial parameters differ between two fresh runs: initialisation draws randomness "
                "not derived from the seed tree (e.g. unseeded NumPy or Python random in custom model code)"
            )
        return (
            f"two fresh runs part at step {step}: a step depends on something besides (seed, step), such as "
            "unseeded randomness in data or model code, the clock, or a non-deterministic kernel"
        )
    if check in ("resume", "segment") and cut is not None and step == cut + 1:
        return (
            f"the process resumed at step {cut} computes a different step {cut + 1}: state outside the "
            "checkpoint (an iterator, counter or host RNG in a data source or model) changed what the step saw"
        )
    if check in ("resume", "segment") and cut is not None and step is not None:
        return f"the resumed run parts {step - cut} steps after the restore at step {cut}"
    return "unknown"
