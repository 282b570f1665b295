"""`exp schema`: the JSON Schema of spec files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .console import write_output

HELP = """Print the JSON Schema of spec files.

Editors pick it up from a `#:schema spec.schema.json` comment in the TOML file.

Example: exp schema -o spec.schema.json"""


def command(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")] = None,
) -> None:
    from expspec.spec import spec_schema

    text = json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"
    write_output(output, text)
