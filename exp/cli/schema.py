"""`exp schema`: the JSON Schema of spec files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from .console import EXIT_INVALID, say

HELP = """Print the JSON Schema of spec files.

Editors pick it up from a `#:schema spec.schema.json` comment in the TOML file.

Example: exp schema -o spec.schema.json"""


def _write_atomically(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def command(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")] = None,
) -> None:
    from exp.spec import spec_schema

    text = json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        _write_atomically(output, text)
    except OSError as err:
        say(f"{output}: cannot write: {err.strerror or err}")
        raise typer.Exit(EXIT_INVALID) from None
    say(f"wrote {output}")
