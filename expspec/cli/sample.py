"""`exp sample`: text from the model a run trained, to look at what it learned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .console import exit_code_for, say
from .options import JsonOpt

HELP = """Generate text after a prompt with the model a run trained.

The model is rebuilt from the run's plan with the parameters of its newest
checkpoint that verifies (or --step), and the prompt is tokenised with the run's
tokenizer (BOS first when the tokenizer adds one). Greedy decoding by default;
--temperature above 0 samples, the same --seed giving the same text. A row stops
at the tokenizer's end-of-sequence token. The completion goes to stdout; the run
directory is only read.

Example: exp sample runs/sft-task --prompt "12+34=" --max-new-tokens 8"""


def command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run directory whose model writes.")],
    prompt: Annotated[str, typer.Option("--prompt", help="The text to continue.")],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=0, help="At most this many new tokens.")] = 64,
    temperature: Annotated[
        float, typer.Option("--temperature", min=0.0, help="0 picks the likeliest token; above 0 samples.")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="The sampling seed (with --temperature above 0).")] = 0,
    step: Annotated[
        int | None, typer.Option("--step", help="Use this checkpoint step instead of the newest verified one.")
    ] = None,
    spec_dir: Annotated[
        Path | None,
        typer.Option("--spec-dir", help="Where the run's relative paths resolve (default: its spec file's folder)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    from expspec.errors import BadInput
    from expspec.runtime.generate import sample_run

    try:
        completion = sample_run(
            run_dir,
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            step=step,
            spec_dir=spec_dir,
        )
    except BadInput as err:
        say(str(err))
        raise typer.Exit(exit_code_for(err)) from None
    if as_json:
        record = {
            "text": completion.text,
            "tokens": completion.tokens,
            "prompt_tokens": completion.prompt_tokens,
            "step": completion.step,
        }
        typer.echo(json.dumps(record))
    else:
        typer.echo(completion.text)
