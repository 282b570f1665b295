"""Chat messages rendered to text with a model's Jinja chat template, as Hugging Face renders them.

The same sandbox, options and helpers as transformers' `apply_chat_template`, so a
conversation becomes the text the model was tuned on. One difference on purpose:
`strftime_now` gives a fixed date, because a template that prints today's date
would make the batches of a step depend on the day the run (or its resume) ran.
"""

from __future__ import annotations

import datetime
import functools
import json
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox
from jinja2 import nodes

from expspec.runtime.data.base import DataError

__all__ = ["FIXED_NOW", "ChatTemplateError", "render_chat"]

FIXED_NOW = datetime.datetime(2024, 7, 26)
"""What `strftime_now` formats: a constant, so rendered text never depends on the calendar."""


class ChatTemplateError(DataError):
    """The chat template failed on a conversation (its own `raise_exception`, a syntax error, ...)."""


class _GenerationBlocks(jinja2.ext.Extension):
    """Accepts `{% generation %}...{% endgeneration %}` (transformers' assistant markers) and renders the body.

    Loss weights here come from comparing renderings, so the markers carry nothing
    we need; without this extension such templates would not even parse.
    """

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return FIXED_NOW.strftime(format)


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> jinja2.Template:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlocks, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def render_chat(
    template: str,
    messages: list[dict],
    *,
    bos_token: str | None,
    eos_token: str | None,
    add_generation_prompt: bool,
) -> str:
    """The text of `messages` under `template`; ChatTemplateError (a DataError naming data.tokenizer) if it fails.

    A token that is None is left undefined, as transformers does, so the template
    renders it as nothing rather than as the word "None".
    """
    context: dict[str, Any] = {"messages": messages, "add_generation_prompt": add_generation_prompt}
    for name, token in (("bos_token", bos_token), ("eos_token", eos_token)):
        if token is not None:
            context[name] = token
    try:
        return _compiled(template).render(**context)
    except Exception as err:  # the template is the model's code: any failure is its error, not ours
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ChatTemplateError(f"data.tokenizer: chat template: {detail}") from None
