"""One audit invocation: which checks run on which targets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from expspec.runtime.runs.records import DamagedRecord
from expspec.runtime.runs.rundir import RunRefused
from expspec.spec import SpecError

from .checks import SpecTarget, audit_integrity, audit_segment, audit_spec
from .judge import LIVE_RETIRED, could_not_run
from .processes import RunError
from .report import AuditReport, CheckResult

__all__ = ["AuditRequest", "run_audit"]


@dataclass(frozen=True)
class AuditRequest:
    targets: tuple[str, ...] = ()
    steps: int = 20
    cuts: int = 1
    kill: bool = False
    segment: tuple[int, int] | None = None
    spec: str | None = None
    lock: Path | None = None
    allow_imports: tuple[str, ...] = ()
    allow_other_environment: bool = False
    """A lock entry recorded in another environment class is skipped (distances reported), not failed."""


def _guarded(check: str, target: str, work: Callable[..., object], *args: object) -> list[CheckResult]:
    """Run checks; a run that could not be made, or a run directory whose records are
    damaged (a line of a record file, its plan), is an `error` result (exit 2), not a crash."""
    try:
        results = work(*args)
    except (RunError, SpecError, DamagedRecord, RunRefused) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        return [could_not_run(check, target, Path(target).stem, message)]
    return list(results) if isinstance(results, list) else [results]  # type: ignore[list-item]


def _record_verdicts(run_dir: Path, results: list[CheckResult]) -> list[dict[str, object]]:
    """Append each verdict to the run's audits.jsonl (what `exp runs` shows): the one
    file an audit writes in a run directory. When a check could not run (`error`,
    exit 2: bad input such as a segment past the run's end, or a rerun that failed)
    nothing is recorded, so bad input leaves the directory as it was.

    Nor is a check skipped because the live run retired every checkpoint it was
    reading: that says nothing about the run's bits, and recorded as its latest audit
    it would hide the last real verdict. What is recorded stays true when read later:
    a pass names only checkpoints that restored, a failure only ones that stayed bad.
    Returns the verdicts recorded (what the run's trackers are sent)."""
    from expspec.runtime.runs.run_files import RunFiles

    files = RunFiles(run_dir)
    if not results or any(r.status == "error" for r in results) or not files.plan.is_file():
        return []
    verdicts = [
        {"time": time.time(), "check": r.check, "status": r.status, "summary": r.summary}
        for r in results
        if not (r.status == "skipped" and LIVE_RETIRED in r.details)
    ]
    if not verdicts:
        return []
    lines = "".join(json.dumps(verdict, sort_keys=True) + "\n" for verdict in verdicts)
    path = files.audits
    try:
        with path.open("ab") as out:
            # A line torn by a killed audit stays (append-only) but must not swallow this one.
            torn = out.tell() > 0 and not path.read_bytes().endswith(b"\n")
            out.write((("\n" if torn else "") + lines).encode())  # one append: concurrent audits do not interleave
    except OSError:
        pass  # a read-only archive of a run can still be audited; the report carries the verdicts
    return verdicts


def run_audit(request: AuditRequest, workdir: Path) -> AuditReport:
    """Every requested check, in order; the report decides the exit code."""
    report = AuditReport()
    for index, target in enumerate(request.targets):
        here = workdir / f"t{index}"
        here.mkdir(parents=True, exist_ok=True)
        path = Path(target)
        if path.is_dir():
            results = _guarded("integrity", target, audit_integrity, path)
            if request.segment is not None:
                start, end = request.segment
                results += _guarded(
                    "segment", target, audit_segment, path, start, end, here, request.spec, request.allow_imports
                )
            verdicts = _record_verdicts(path, results)
            if verdicts:  # also to the run's W&B and MLflow runs, when its plan has them
                from expspec.runtime.runs.trackers import attach_verdicts

                report.notes += attach_verdicts(path, verdicts)
            report.results += results
        else:
            spec_target = SpecTarget(target, (), request.allow_imports)
            report.results += _guarded(
                "determinism", target, audit_spec, spec_target, request.steps, request.cuts, request.kill, here
            )
    if request.lock is not None:
        from .lockfile import verify_lock

        report.results += _guarded(
            "lock",
            str(request.lock),
            partial(verify_lock, allow_other_environment=request.allow_other_environment),
            request.lock,
            workdir / "lock",
            request.allow_imports,
        )
    return report
