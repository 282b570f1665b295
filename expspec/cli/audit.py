"""`exp audit`: prove determinism and resume-equivalence, verify runs and lockfiles."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from expspec.exit_codes import ExitCode

from .console import say
from .exit_status import audit_exit_code, stopped_exit_code
from .options import AllowImportOpt

HELP = f"""Prove a spec's runs are deterministic and resume bit-exactly; verify past runs and lockfiles.

A spec gets two fresh-process runs (one cut and resumed): determinism and resume.
A run directory gets `integrity` (and `segment` with --segment S:E).
Exit 0 all hold, 1 a check failed, 2 bad input or a run could not be made;
{ExitCode.PREEMPTED:d} (SIGTERM) or {ExitCode.INTERRUPTED:d} (SIGINT) when stopped: its runs are stopped first.

Example: exp audit examples/digits_mlp.toml --steps 40 --junit report.xml"""


def _segment(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    start, sep, end = text.partition(":")
    if not sep or not start.isdigit() or not end.isdigit() or int(start) >= int(end):
        raise typer.BadParameter("expected S:E with S < E, e.g. 100:200", param_hint="--segment")
    return int(start), int(end)


def command(
    targets: Annotated[
        list[str] | None,
        typer.Argument(metavar="[SPEC|RUN_DIR]...", help="Spec files to audit, or run directories to verify."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=2, help="Steps each spec audit runs.")] = 20,
    cuts: Annotated[int, typer.Option("--cuts", min=1, help="Cut-and-resume points in the resume check.")] = 1,
    kill: Annotated[bool, typer.Option("--kill", help="Cut with SIGKILL instead of --stop-at.")] = False,
    segment: Annotated[
        str | None, typer.Option("--segment", metavar="S:E", help="Rerun a run directory from step S to E.")
    ] = None,
    spec: Annotated[
        Path | None, typer.Option("--spec", help="The spec a run directory was made from (default: from its plan).")
    ] = None,
    lock: Annotated[Path | None, typer.Option("--lock", help="Verify the specs recorded in this lockfile.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="Write the full report as JSON.")
    ] = None,
    junit_out: Annotated[Path | None, typer.Option("--junit", metavar="FILE", help="Write a JUnit XML report.")] = None,
    allow_import: AllowImportOpt = None,
    allow_other_environment: Annotated[
        bool,
        typer.Option(
            "--allow-other-environment",
            help="With --lock: a lock entry from another environment class is reported and skipped, not failed.",
        ),
    ] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the audit's run directories.")] = False,
) -> None:
    from expspec.audit.children import StoppedBySignal, stopped_on_signal
    from expspec.audit.run import AuditRequest, run_audit

    targets = targets or []
    if not targets and lock is None:
        say("exp audit: give a spec, a run directory or --lock FILE")
        raise typer.Exit(ExitCode.BAD_INPUT)
    request = AuditRequest(
        targets=tuple(targets),
        steps=steps,
        cuts=cuts,
        kill=kill,
        segment=_segment(segment),
        spec=str(spec) if spec else None,
        lock=lock,
        allow_imports=tuple(allow_import or ()),
        allow_other_environment=allow_other_environment,
    )
    t0 = time.perf_counter()
    workdir: Path | None = None
    stopped: StoppedBySignal | None = None
    try:
        with stopped_on_signal():  # a SIGTERM or SIGINT stops and reaps every run first
            workdir = Path(tempfile.mkdtemp(prefix="exp-audit-"))
            report = run_audit(request, workdir)
    except StoppedBySignal as stop:
        stopped = stop
    finally:
        if workdir is not None and keep:
            say(f"audit runs kept in {workdir}")
        elif workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    if stopped is not None:
        left = "kept" if keep else "removed"
        say(f"exp audit: stopped by {stopped.name}; its runs were stopped and their folder {left}")
        raise typer.Exit(stopped_exit_code(stopped.signum))
    report.seconds = time.perf_counter() - t0
    from .audit_render import render_report

    render_report(report)
    for note in report.notes:
        say(note)
    code = audit_exit_code(report)
    if json_out is not None:
        json_out.write_text(report.to_json(exit_code=code) + "\n", encoding="utf-8")
    if junit_out is not None:
        junit_out.write_text(report.to_junit(), encoding="utf-8")
    raise typer.Exit(code)
