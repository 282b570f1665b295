"""`exp run`: train a spec, resuming its run directory when it is the same experiment."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from expspec.errors import RunFailure
from expspec.exit_codes import ExitCode

from .console import exit_code_for, say, stderr
from .options import AllowImportOpt, JsonOpt, OverridesArg, SpecArg
from .runnable import runnable_plan
from .sweep import SweepOpt, run_sweep_command

HELP = f"""Train a spec; kill it at any moment and run it again to resume, bit-exactly.

With --sweep KEY=V1,V2,... (repeatable) it trains every combination of the values, one point
after another, each as its own `exp run` process in its own run directory, named from the
point's values: runs/<name>-sweep/learning_rate=0.003,hidden=128 (a key by its last part,
lists joined with +; --run-dir sets the folder instead of runs/<name>-sweep, kept apart from
the plain run's runs/<name>). Every point is compiled first: a bad value, a sweep of operational
fields only, or two points of one trajectory are refused before anything runs. A failed point
does not stop the others (the sweep exits with the first failure's code); a preempted one stops
the sweep with exit {ExitCode.PREEMPTED:d}, and the same command resumes it, skipping the complete points.

\b
Example: exp run examples/digits_mlp.toml
Sweep:   exp run examples/digits_mlp.toml --sweep optimizer.learning_rate=1e-3,3e-3,1e-2"""


def _disk_full(err: BaseException | None) -> bool:
    seen = 0
    while err is not None and seen < 10:
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _recorded_since(events: Path, began: float) -> bool:
    """Whether this attempt recorded its error in `events` (the hint points nowhere else)."""
    from expspec.runtime.runs.records import ignore_damage, iter_jsonl
    from expspec.runtime.runs.run_files import Event

    try:
        return any(
            e.get("event") == Event.ERROR and isinstance(e.get("time"), int | float) and e["time"] >= began
            for e in iter_jsonl(events, ignore_damage)
        )
    except OSError:
        return False


def _bad_input_line(err: Exception, spec: Path) -> str:
    """A refused run directory or import names its own place; what a component (data,
    model, mesh, cluster) found wrong in the spec is prefixed by the spec's file."""
    from expspec.runtime.runs.rundir import RunRefused
    from expspec.spec import ImportNotAllowed

    return str(err) if isinstance(err, RunRefused | ImportNotAllowed) else f"{spec}: {err}"


def _fail_run(err: Exception, run_dir: Path, began: float) -> NoReturn:
    """One line, exit 3, and no noise from library threads still winding down."""
    from expspec.runtime.runs.run_files import RunFiles

    events = RunFiles(run_dir).events
    where = f" (details in {events})" if _recorded_since(events, began) else ""
    if _disk_full(err):
        say(f"error: no space left on device writing {run_dir}; free space and run again to resume{where}")
    else:
        reason = (str(err).splitlines() or [""])[0][:300]
        # A library failure's message is written for people; anything else is named by its type.
        kind = "" if isinstance(err, RunFailure) else f"{type(err).__name__}: "
        say(f"error: {kind}{reason}{where}")
    sys.stdout.flush()
    stderr().file.flush()
    # Orbax's writer threads may still be failing; what they say is in events.jsonl.
    os._exit(ExitCode.RUN_FAILED)


def command(
    spec: SpecArg,
    overrides: OverridesArg = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Run directory (default: runs/<name>); with --sweep, the folder of the points' run directories.",
        ),
    ] = None,
    stop_at: Annotated[
        int | None, typer.Option("--stop-at", min=1, metavar="STEP", help="Stop cleanly after STEP, with a checkpoint.")
    ] = None,
    allow_import: AllowImportOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    as_json: JsonOpt = False,
    sweep: SweepOpt = None,
    rehash_data: Annotated[
        bool,
        typer.Option(
            "--rehash-data", help="Read the data files again for their fingerprint instead of the cached one."
        ),
    ] = False,
) -> None:
    allowed = tuple(allow_import or ())
    if sweep:
        return run_sweep_command(
            spec,
            overrides or [],
            sweep,
            run_dir=run_dir,
            stop_at=stop_at,
            allowed=allowed,
            quiet=quiet,
            as_json=as_json,
        )
    plan = runnable_plan(spec, overrides or [], allowed)
    from expspec.runtime.processes.execute import RunOptions, execute

    options = RunOptions(
        spec_dir=Path(spec).resolve().parent,
        stop_at=stop_at,
        allow_imports=allowed,
        progress="quiet" if quiet else "auto",
        rehash_data=rehash_data,
    )
    target = run_dir if run_dir is not None else Path("runs") / plan.name
    began = time.time()
    try:
        result = execute(plan, target, options)
    except Exception as err:  # noqa: BLE001 - one line here, the traceback of a failure in events.jsonl
        if exit_code_for(err) is ExitCode.BAD_INPUT:
            say(_bad_input_line(err, spec))
            raise typer.Exit(ExitCode.BAD_INPUT) from None
        _fail_run(err, target, began)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), sort_keys=True))
    if not quiet:
        messages = {
            "finished": f"finished {result.step}/{result.total_steps} steps in {result.run_dir}",
            "stopped": f"stopped at step {result.step}/{result.total_steps} (--stop-at); run again to continue",
            "preempted": f"{result.preemption()}; run again to resume",
            "complete": f"{result.run_dir} is already complete ({result.step} steps); nothing to do",
        }
        say(messages[result.outcome])
    if result.outcome == "preempted":
        raise typer.Exit(ExitCode.PREEMPTED)
