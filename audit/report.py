"""Audit results, and their JSON and JUnit forms."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["AuditReport", "CheckResult", "Overall", "Status"]

Status = Literal["passed", "failed", "skipped", "error"]
Overall = Literal["passed", "failed", "error"]
"""What a whole report says: every check held, one failed, or one could not run."""


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """One check of one target: a verdict, made once by `judge` and never changed
    (a later step that adds localisation makes a new one with `dataclasses.replace`)."""

    check: str
    """determinism, resume, segment, integrity or lock."""
    target: str
    """The spec file, run directory or lockfile entry the check is about."""
    name: str
    """The experiment's name."""
    status: Status
    summary: str
    """One line for people."""
    compared_steps: list[int] = field(default_factory=list)
    first_divergence: int | None = None
    leaves: list[str] = field(default_factory=list)
    """Leaves that differ at the first divergence (from per-leaf fingerprints)."""
    distances: list[dict[str, Any]] = field(default_factory=list)
    """Per differing leaf: max |a-b| and max ULP distance, from rerunning both sides."""
    environment: dict[str, Any] | None = None
    """Environment-class differences between the two sides, if any."""
    likely_cause: str | None = None
    kind: str | None = None
    """For lock checks, the verdict: reproduced, trajectory_changed, input_changed,
    environment_changed or regression (none when the check could not compare)."""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditReport:
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    """What did not hold besides the checks (a tracker that could not take the verdicts)."""

    @property
    def overall(self) -> Overall:
        """error when a check could not run, else failed when one failed, else passed
        (skipped checks pass). The command line picks its exit code from it."""
        statuses = {r.status for r in self.results}
        if "error" in statuses:
            return "error"
        return "failed" if "failed" in statuses else "passed"

    def to_dict(self, *, exit_code: int) -> dict[str, Any]:
        """The report, with the exit code the command that made it exits with."""
        return {
            "passed": self.overall == "passed",
            "exit_code": int(exit_code),
            "seconds": self.seconds,
            "checks": [asdict(r) for r in self.results],
        }

    def to_json(self, *, exit_code: int) -> str:
        return json.dumps(self.to_dict(exit_code=exit_code), indent=2, sort_keys=True)

    def to_junit(self) -> str:
        """JUnit XML: a suite per target, a testcase per check."""
        suites = ET.Element("testsuites", name="exp audit", time=f"{self.seconds:.3f}")
        by_target: dict[str, list[CheckResult]] = {}
        for result in self.results:
            by_target.setdefault(result.target, []).append(result)
        for target, results in by_target.items():
            suite = ET.SubElement(
                suites,
                "testsuite",
                name=target,
                tests=str(len(results)),
                failures=str(sum(r.status == "failed" for r in results)),
                errors=str(sum(r.status == "error" for r in results)),
                skipped=str(sum(r.status == "skipped" for r in results)),
                time=f"{sum(r.seconds for r in results):.3f}",
            )
            for result in results:
                case = ET.SubElement(
                    suite, "testcase", classname=result.name, name=result.check, time=f"{result.seconds:.3f}"
                )
                body = _failure_text(result)
                if result.status == "failed":
                    ET.SubElement(case, "failure", message=result.summary, type=result.kind or result.check).text = body
                elif result.status == "error":
                    ET.SubElement(case, "error", message=result.summary).text = body
                elif result.status == "skipped":
                    ET.SubElement(case, "skipped", message=result.summary)
                else:
                    ET.SubElement(case, "system-out").text = result.summary
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _failure_text(result: CheckResult) -> str:
    lines = [result.summary]
    if result.first_divergence is not None:
        lines.append(f"first diverging step: {result.first_divergence}")
    if result.leaves:
        lines.append("leaves: " + ", ".join(result.leaves[:20]))
    for distance in result.distances[:20]:
        lines.append(distance.get("text", str(distance)))
    if result.environment:
        lines.append("environment differs: " + json.dumps(result.environment, sort_keys=True))
    if result.likely_cause:
        lines.append(f"likely cause: {result.likely_cause}")
    return "\n".join(lines)
