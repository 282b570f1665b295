"""One record's tokens and loss weights, for the three record styles: text, prompt/completion, chat.

Supervised fine-tuning trains only on what the model should write: the weights
are 1 on completion (assistant) tokens and 0 on prompts, system and user turns
and the chat template's own scaffolding. Each part is tokenised on its own, so
the boundary between weighted and unweighted tokens falls exactly where the
text changes hands, never inside a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from expspec.runtime.data.base import DataError
from expspec.runtime.data.chat_template import render_chat
from expspec.runtime.data.tokenizer import Tokenizer

__all__ = ["TokenExample", "chat_example", "prompt_completion_example", "text_example"]


@dataclass(frozen=True)
class TokenExample:
    """One document's tokens and per-token loss weights.

    weights[i] says whether token i is a target the loss counts (1.0) or context
    only (0.0). The source later shifts: x = tokens[:-1], y = tokens[1:],
    weight = weights[1:].
    """

    tokens: np.ndarray
    """int32 [n]"""
    weights: np.ndarray
    """float32 [n], each 0.0 or 1.0"""


def text_example(tok: Tokenizer, text: str) -> TokenExample:
    """[bos] + text + [eos] (each special only when the tokenizer has it); every token but BOS is a target."""
    _need_str(text, "text")
    return _assemble(tok, [(text, 1.0)], eos=True)


def prompt_completion_example(tok: Tokenizer, prompt: str, completion: str) -> TokenExample:
    """[bos] + prompt (weight 0), then completion + [eos] (weight 1): the model learns to answer, not to ask."""
    _need_str(prompt, "prompt")
    _need_str(completion, "completion")
    return _assemble(tok, [(prompt, 0.0), (completion, 1.0)], eos=True)


def chat_example(tok: Tokenizer, messages: list[dict]) -> TokenExample:
    """The conversation rendered with the tokenizer's chat template; weight 1 on each assistant turn only.

    For assistant message i, the rendering of messages[:i] with the generation
    prompt must be a prefix of messages[:i + 1] rendered without it, and both of
    the whole conversation's rendering: the difference (the reply and the
    template's end-of-turn marker) weighs 1, everything else 0. Raises ValueError
    for a malformed message list (the caller adds file and record), DataError when
    the tokenizer has no chat template.
    """
    if tok.chat_template is None:
        raise DataError(
            f"data.messages_field: chat records need a tokenizer with a chat template; {tok.files[0]} has none "
            "(tokenizer_config.json 'chat_template' or chat_template.jinja in its folder)"
        )
    _check_messages(messages)

    def render(upto: int, generation_prompt: bool) -> str:
        return render_chat(
            tok.chat_template,
            messages[:upto],
            bos_token=tok.bos_token,
            eos_token=tok.eos_token,
            add_generation_prompt=generation_prompt,
        )

    whole = render(len(messages), False)
    pieces: list[tuple[str, float]] = []
    done = 0  # characters of `whole` already assigned a weight
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt, through = render(i, True), render(i + 1, False)
        if not (through.startswith(prompt) and whole.startswith(through) and len(prompt) >= done):
            raise ValueError(
                f"the chat template does not render message {i + 1} (assistant) as an extension of the "
                "conversation before it, so its reply cannot be told apart from the context"
            )
        pieces += [(whole[done : len(prompt)], 0.0), (whole[len(prompt) : len(through)], 1.0)]
        done = len(through)
    pieces.append((whole[done:], 0.0))
    renders_bos = tok.bos_token is not None and whole.startswith(tok.bos_token)
    return _assemble(tok, pieces, eos=False, bos=not renders_bos)


def _assemble(tok: Tokenizer, pieces: list[tuple[str, float]], *, eos: bool, bos: bool = True) -> TokenExample:
    """Tokens of each piece, in order, each with its piece's weight; BOS (weight 0) and EOS (weight 1) around."""
    pieces = [(text, weight) for text, weight in pieces if text]
    tokens: list[int] = []
    weights: list[float] = []
    if bos:
        tokens += tok.bos_prefix
        weights += [0.0] * len(tok.bos_prefix)
    for ids, (_, weight) in zip(tok.encode_parts([text for text, _ in pieces]), pieces, strict=True):
        tokens += ids
        weights += [weight] * len(ids)
    if eos and tok.eos_id is not None:
        tokens.append(tok.eos_id)
        weights.append(1.0)
    return TokenExample(tokens=np.asarray(tokens, dtype=np.int32), weights=np.asarray(weights, dtype=np.float32))


def _need_str(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"the {what} must be a string, got {type(value).__name__}")


def _check_messages(messages: Any) -> None:
    """A list of {role: str, content: str} with at least one assistant turn; ValueError naming the fault."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{role, content}} objects, got {_shown(messages)}")
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} must be an object with 'role' and 'content', got {_shown(message)}")
        for field in ("role", "content"):
            if not isinstance(message.get(field), str):
                raise ValueError(f"message {i}: '{field}' must be a string, got {_shown(message.get(field))}")
    if not any(message["role"] == "assistant" for message in messages):
        raise ValueError("the conversation has no assistant message, so nothing in it would be trained on")


def _shown(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
