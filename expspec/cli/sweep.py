"""`exp run --sweep`: train a grid of overrides, one run directory per point."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from expspec.exit_codes import ExitCode

from .console import fail_invalid, say

if TYPE_CHECKING:
    from expspec.compiler.sweep import Sweep, SweepPoint
    from expspec.runtime.processes.sweep import PointResult, SweepResult

SweepOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sweep",
        metavar="KEY=V1,V2,...",
        help="Sweep KEY over TOML values separated by commas (repeatable: the grid of every combination).",
    ),
]


def _metrics(values: dict[str, float] | None) -> str:
    return "  ".join(f"{name} {value:.4g}" for name, value in sorted((values or {}).items()))


def _started(total: int) -> Callable[[int, SweepPoint], None]:
    def started(index: int, point: SweepPoint) -> None:
        say(f"[{index + 1}/{total}] {' '.join(point.overrides)}")

    return started


def _finished(total: int, quiet: bool) -> Callable[[int, PointResult], None]:
    def finished(index: int, result: PointResult) -> None:
        if quiet and result.outcome != "failed":
            return
        line = f"[{index + 1}/{total}] {result.outcome} {result.run_dir}"
        if result.outcome == "failed":
            line += f" (exit {result.exit_code})" + (f": {result.detail}" if result.detail else "")
        elif result.eval_metrics:
            line += f"  eval {_metrics(result.eval_metrics)}"
        say(line)

    return finished


def _table(sweep: Sweep, result: SweepResult) -> None:
    from rich.table import Table

    from .console import stderr

    names = sorted({name for point in result.points for name in point.eval_metrics or {}})
    table = Table(show_edge=False, pad_edge=False)
    for column in (*sweep.labels, "outcome", "step", *(f"eval {name}" for name in names), "run dir"):
        table.add_column(column, overflow="fold")
    for point in result.points:
        metrics = point.eval_metrics or {}
        step = (point.summary or {}).get("step")
        table.add_row(
            *(json.dumps(value) if not isinstance(value, str) else value for value in point.point.values),
            point.outcome,
            f"{'?' if step is None else step}/{point.point.plan.spec.train.steps}",
            *(f"{metrics[name]:.4g}" if name in metrics else "" for name in names),
            str(point.run_dir),
        )
    stderr().print(table)


def _verdict(result: SweepResult, total: int) -> str | None:
    failed = sum(point.outcome == "failed" for point in result.points)
    if result.stopped_by is not None:
        return (
            f"sweep {result.stopped_by} after {len(result.points)} of {total} points; "
            "run the same command again to resume (complete points are skipped)"
        )
    if failed:
        return f"{failed} of {total} points failed; exit code {result.exit_code} is the first failure's"
    return None


def run_sweep_command(
    spec: Path,
    overrides: Sequence[str],
    sweeps: Sequence[str],
    *,
    run_dir: Path | None,
    stop_at: int | None,
    allowed: Sequence[str],
    quiet: bool,
    as_json: bool,
) -> None:
    """Compile every point, check every run directory, then run the points one by one."""
    from expspec.compiler.sweep import plan_sweep
    from expspec.spec import SpecError

    from .runnable import import_refusals

    try:
        sweep = plan_sweep(spec, overrides, sweeps)
        refused = {str(p): p for point in sweep.points for p in import_refusals(spec, point.plan, allowed)}
        if refused:
            raise SpecError(list(refused.values()))
    except SpecError as err:
        fail_invalid(err)

    from expspec.runtime.processes.sweep import SweepOptions, check_sweep, run_sweep

    parent = run_dir if run_dir is not None else Path("runs") / f"{sweep.name}-sweep"
    options = SweepOptions(spec, parent, tuple(overrides), stop_at, tuple(allowed), quiet)
    problems = check_sweep(sweep.points, options)
    for problem in problems:
        say(problem)
    if problems:
        raise typer.Exit(ExitCode.BAD_INPUT)
    total = len(sweep.points)
    result = run_sweep(
        sweep.points,
        options,
        started=None if quiet else _started(total),
        finished=_finished(total, quiet),
    )
    if as_json:
        points = [point.to_dict(sweep.labels) for point in result.points]
        typer.echo(json.dumps({"points": points, "stopped": result.stopped_by, "exit_code": result.exit_code}))
    if not quiet:
        _table(sweep, result)
        verdict = _verdict(result, total)
        if verdict:
            say(verdict)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
