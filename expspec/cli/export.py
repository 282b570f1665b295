"""`exp export`: a run's trained decoder as a Hugging Face folder (merged weights or PEFT adapters)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from expspec.errors import BadInput

from .console import exit_code_for, say
from .options import JsonOpt

HELP = """Export a run's trained decoder as a Hugging Face folder.

--format merged writes a complete model folder (config.json, safetensors weights with every
LoRA adapter folded in, the run's tokenizer files) that `transformers` and
[model] kind = "pretrained" load; --format peft writes the LoRA adapters alone
(adapter_model.safetensors, adapter_config.json) as the PEFT library saves them.
The checkpoint (default: the newest that verifies) is read through its verified hash;
the output folder must be new or empty and is written whole or not at all.

Example: exp export runs/sft-lora -o exported/sft-lora --format merged"""


class Format(StrEnum):
    merged = "merged"
    peft = "peft"


def command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run directory to export.")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", help="The folder to write (new or empty).")],
    fmt: Annotated[Format, typer.Option("--format", help="merged: a whole model folder; peft: the adapters.")],
    step: Annotated[
        int | None, typer.Option("--step", metavar="S", help="Checkpoint step (default: the newest that verifies).")
    ] = None,
    spec_dir: Annotated[
        Path | None,
        typer.Option(
            "--spec-dir",
            metavar="DIR",
            help="Where the run's relative paths resolve (default: the folder of the spec the run was started with).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    from expspec.runtime.export import export_run

    try:
        result = export_run(run_dir, output, fmt.value, step=step, spec_dir=spec_dir)
    except BadInput as err:
        say(str(err))
        raise typer.Exit(exit_code_for(err)) from None
    for skipped, reason in sorted(result.skipped.items(), reverse=True):
        say(f"checkpoint {skipped} passed over: {reason}")
    if json_out:
        summary = {
            "folder": str(result.folder),
            "format": result.format,
            "step": result.step,
            "files": [str(f) for f in result.files],
            "skipped": {str(k): v for k, v in result.skipped.items()},
        }
        typer.echo(json.dumps(summary, indent=2))
    say(f"wrote {result.folder} ({result.format}, step {result.step}: {', '.join(map(str, result.files))})")
