"""`exp launch`: train a spec on a JAX cluster of local processes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from expspec.exit_codes import ExitCode

from .console import say
from .options import AllowImportOpt, JsonOpt, OverridesArg, SpecArg
from .runnable import runnable_plan

HELP = """Train a spec on a JAX cluster of local `exp run` processes (virtual CPU devices), for development and tests.

Every process uses the same run directory; process 0 prints progress and writes the run's records,
process i writes its output to RUN_DIR/launch/process-<i>.out and RUN_DIR/launch.json lists their pids.
When one process dies the others are killed at once: run the same command again to resume from the
last checkpoint. The mesh must use every device of the cluster (mesh.data=-1).

\b
Example: exp launch --processes 2 --devices-per-process 2 examples/digits_mlp.toml mesh.data=-1"""


def _refuse(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        say(f"{option}: must be at least 1 (got {value})")
        raise typer.Exit(ExitCode.BAD_INPUT)


def _echo(stream: str, line: str) -> None:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write(line)
    out.flush()


def command(
    spec: SpecArg,
    processes: Annotated[int, typer.Option("--processes", metavar="P", help="Processes in the cluster.")],
    overrides: OverridesArg = None,
    devices_per_process: Annotated[
        int, typer.Option("--devices-per-process", metavar="D", help="Virtual CPU devices of each process.")
    ] = 1,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Run directory (default: runs/<name>).")] = None,
    stop_at: Annotated[
        int | None, typer.Option("--stop-at", metavar="STEP", help="Stop cleanly after STEP, with a checkpoint.")
    ] = None,
    allow_import: AllowImportOpt = None,
    as_json: JsonOpt = False,
) -> None:
    _refuse("--processes", processes)
    _refuse("--devices-per-process", devices_per_process)
    _refuse("--stop-at", stop_at)

    from expspec.runtime.runs.rundir import RunDir, RunRefused

    allowed = tuple(allow_import or ())
    plan = runnable_plan(spec, overrides or [], allowed)
    # Same directory rule as `exp run`, decided once so that every member uses it.
    target = run_dir if run_dir is not None else Path("runs") / plan.name
    try:
        RunDir(target).check_continuable(plan)  # before launch.json lands in another run's directory
    except RunRefused as err:
        say(str(err))
        raise typer.Exit(ExitCode.BAD_INPUT) from None

    from expspec.runtime.processes.local_cluster import LaunchOptions, LaunchRefused, launch

    options = LaunchOptions(
        spec=spec,
        run_dir=target,
        processes=processes,
        devices_per_process=devices_per_process,
        overrides=tuple(overrides or ()),
        stop_at=stop_at,
        allow_imports=allowed,
        as_json=as_json,
    )
    try:
        result = launch(options, echo=_echo)
    except LaunchRefused as err:
        say(f"--run-dir: {err}")
        raise typer.Exit(ExitCode.BAD_INPUT) from None
    for line in result.report():
        say(line)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
