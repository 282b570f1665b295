"""`exp --help`: every command with its one-line description and an example.

Both come from the command's own help text (its first line, and its first line
that starts with `Example:`), so a new command documents itself here and the
two can never disagree.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

__all__ = ["ExamplesGroup", "summary_and_example"]

EXAMPLE = "Example:"


def summary_and_example(help_text: str) -> tuple[str, str | None]:
    """The first line of a command's help, and the command line of its example (if any)."""
    lines = [line.strip() for line in help_text.splitlines()]
    summary = next((line for line in lines if line and line != "\b"), "")
    example = next((line[len(EXAMPLE) :].strip() for line in lines if line.startswith(EXAMPLE)), None)
    return summary, example


class ExamplesGroup(TyperGroup):
    """The root group: its command list shows each command's whole first line (click
    would cut it to fit the terminal) and, under it, the command's example."""

    # Context and formatter are click's, which newer typers vendor under another name.
    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        shown = [(name, command) for name, command in commands if command is not None and not command.hidden]
        if not shown:
            return
        width = max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            for name, command in shown:
                summary, example = summary_and_example(command.help or "")
                # One row at a time, padded alike, so that the example can follow its row.
                formatter.write_dl([(name.ljust(width), summary)])
                if example:
                    formatter.write(f"{'':{formatter.current_indent + width + 2}}$ {example}\n")
