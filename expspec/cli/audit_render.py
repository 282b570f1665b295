"""The audit report for people: a table, then one block per failed check."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from expspec.audit.report import AuditReport, CheckResult

from .console import stderr

_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow", "error": "bold magenta"}


def _details(result: CheckResult) -> list[str]:
    lines = [f"{result.check} of {result.target}: {result.summary}"]
    if result.first_divergence is not None:
        lines.append(f"  first diverging step: {result.first_divergence}")
    if result.leaves:
        more = f" (+{len(result.leaves) - 8} more)" if len(result.leaves) > 8 else ""
        lines.append(f"  leaves that differ: {', '.join(result.leaves[:8])}{more}")
    for distance in result.distances[:8]:
        lines.append(f"    {distance.get('text', distance)}")
    if result.environment:
        for key, (a, b) in list(result.environment.items())[:12]:
            lines.append(f"  environment {key}: {a} (locked) vs {b} (now)")
    details = result.details
    for key, (a, b) in details.get("inputs", {}).items():
        lines.append(f"  input {key}: {a} (locked) vs {b} (now)")
    for key, (a, b) in details.get("changes", {}).items() if result.kind == "trajectory_changed" else ():
        lines.append(f"  trajectory field {key}: {a!r} (locked) vs {b!r} (now)")
    for key, value in details.items():
        if key in ("localisation", "bad"):
            lines.append(f"  {key}: {value}")
    if result.likely_cause:
        lines.append(f"  likely cause: {result.likely_cause}")
    if "install" in details:
        lines.append(f"  install the locked versions: {details['install']}")
    if "rerecord" in details:
        lines.append(f"  re-record the lock: {details['rerecord']}")
    return lines


def _explained(result: CheckResult) -> bool:
    """Failures, checks that could not run, and checks skipped in another environment."""
    return result.status in ("failed", "error") or result.kind in ("environment_changed", "cross_environment")


def render_report(report: AuditReport) -> None:
    console = stderr()
    table = Table(title="exp audit", title_justify="left", show_edge=False, pad_edge=False)
    for column in ("target", "check", "result", "steps", "seconds", "summary"):
        table.add_column(column, overflow="fold")
    for result in report.results:
        table.add_row(
            result.target,
            result.check,
            Text(result.status, style=_STYLE[result.status]),
            str(len(result.compared_steps)),
            f"{result.seconds:.1f}",
            result.summary,
        )
    console.print(table)
    for result in report.results:
        if _explained(result):
            console.print()
            for line in _details(result):
                console.print(line, markup=False)
    verdicts = {"passed": "all checks hold", "failed": "a check failed", "error": "a check could not run"}
    verdict = verdicts[report.overall]
    console.print(f"\n{verdict} ({report.seconds:.1f} s)", markup=False)
