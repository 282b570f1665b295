"""`exp report`: one self-contained HTML page about a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from expspec.exit_codes import ExitCode

from .console import say, write_output

HELP = """Write a self-contained HTML page about a run: plan, environment, curves, audits.

Training loss, eval metrics, learning rate and steps/s are drawn over steps with the
resume and preemption points marked; the per-step ledger agreement between attempts is
drawn as a strip, next to the audit verdicts. Images are embedded: the page loads
nothing from the network. The run directory is only read.

Example: exp report runs/digits-mlp -o digits.html"""


def command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run directory to report on.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write; - for stdout.")] = Path(
        "report.html"
    ),
) -> None:
    from expspec.runtime.runs.report_data import ReportError, read_run

    try:
        run = read_run(run_dir)
    except ReportError as err:
        say(str(err))
        raise typer.Exit(ExitCode.BAD_INPUT) from None
    if str(output) != "-" and not output.parent.is_dir():
        say(f"{output}: cannot write: no such directory {output.parent}")
        raise typer.Exit(ExitCode.BAD_INPUT)

    from .report_page import render_page
    from .report_plots import draw_plots

    page = render_page(run, draw_plots(run))
    write_output(output, page)
