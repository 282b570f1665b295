"""Token examples and their loss weights: plain text, prompt/completion and chat, on real tokenizers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expspec.runtime.data.base import DataError
from expspec.runtime.data.chat_template import ChatTemplateError, render_chat
from expspec.runtime.data.token_examples import (
    TokenExample,
    chat_example,
    prompt_completion_example,
    text_example,
)
from expspec.runtime.data.tokenizer import Tokenizer, load_tokenizer
from tests.runtime.tokenizer_builders import (
    CHATML_TEMPLATE,
    bpe_tokenizer_json,
    chatml_folder,
    sentencepiece_model,
    write_json,
)

CONVERSATION = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": "What is 12 + 30?"},
    {"role": "assistant", "content": "12 + 30 = 42"},
    {"role": "user", "content": "thanks! and 1 + 1?"},
    {"role": "assistant", "content": "1 + 1 = 2, you are welcome"},
]

LLAMA2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
"""Renders BOS itself before every user turn, as Llama 2's template does."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tokenizers")
    chatml_folder(root / "chatml")
    bpe_tokenizer_json(root / "bare" / "tokenizer.json", ["<s>", "</s>", "<pad>"])
    sentencepiece_model(root / "sp" / "tokenizer.model", ["<|im_start|>", "<|im_end|>"])
    write_json(root / "sp" / "tokenizer_config.json", {"eos_token": "<|im_end|>", "chat_template": CHATML_TEMPLATE})
    (root / "llama").mkdir()
    write_json(root / "llama" / "tokenizer_config.json", {"chat_template": LLAMA2_TEMPLATE})
    (root / "llama" / "tokenizer.model").write_bytes((root / "sp" / "tokenizer.model").read_bytes())
    return root


@pytest.fixture(scope="module", params=["chatml", "sp"])
def chat_tok(request: pytest.FixtureRequest, built: Path) -> Tokenizer:
    return load_tokenizer(built / request.param)


def _weighted_runs(tok: Tokenizer, example: TokenExample) -> list[str]:
    """The text of each maximal run of weight-1 tokens, decoded in its context (a run's text is what it adds
    to the decoding of everything before it, so a SentencePiece continuation keeps its leading space)."""
    tokens, weights = example.tokens.tolist(), example.weights.tolist()
    runs, start = [], None
    for i, weight in enumerate([*weights, 0.0]):
        if weight == 1.0 and start is None:
            start = i
        elif weight != 1.0 and start is not None:
            before, through = tok.decode(tokens[:start]), tok.decode(tokens[:i])
            assert through.startswith(before)
            runs.append(through[len(before) :])
            start = None
    return runs


def _check_arrays(example: TokenExample) -> None:
    assert example.tokens.dtype == np.int32 and example.weights.dtype == np.float32
    assert example.tokens.shape == example.weights.shape
    assert set(np.unique(example.weights).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("where", ["bare/tokenizer.json", "sp/tokenizer.model"])
def test_text_example_wraps_bos_and_eos(built: Path, where: str) -> None:
    tok = load_tokenizer(built / where)
    text = "the model reads short stories"
    example = text_example(tok, text)
    _check_arrays(example)
    body = tok.encode(text)
    assert example.tokens.tolist() == [tok.bos_id, *body, tok.eos_id]
    assert example.weights.tolist() == [0.0] + [1.0] * (len(body) + 1)


def test_text_example_without_bos(built: Path) -> None:
    tok = load_tokenizer(built / "chatml")  # bos_token null: only EOS is added
    example = text_example(tok, "hello world")
    assert example.tokens.tolist() == [*tok.encode("hello world"), tok.eos_id]
    assert example.weights.tolist() == [1.0] * len(example.tokens)


@pytest.mark.parametrize("where", ["bare/tokenizer.json", "chatml", "sp/tokenizer.model"])
def test_prompt_completion_weighs_only_the_completion(built: Path, where: str) -> None:
    tok = load_tokenizer(built / where)
    prompt, completion = "Reverse: cats dogs =", " sgod stac"
    example = prompt_completion_example(tok, prompt, completion)
    _check_arrays(example)
    tokens, weights = example.tokens.tolist(), example.weights.tolist()
    n_context = len(tok.encode(prompt)) + (tok.bos_id is not None)
    assert weights == [0.0] * n_context + [1.0] * (len(tokens) - n_context)
    start = 1 if tok.bos_id is not None else 0
    assert tokens[:start] == ([tok.bos_id] if start else []) and tok.decode(tokens[start:n_context]) == prompt
    assert _weighted_runs(tok, example) == [completion + tok.eos_token]
    assert tokens[-1] == tok.eos_id and tok.pad_id not in tokens[n_context:-1]
    # parts meet at a token boundary here, so the pieces' tokens are exactly the whole text's
    assert tokens[start:-1] == tok.encode(prompt + completion)


def test_chat_weighs_exactly_the_assistant_replies(chat_tok: Tokenizer) -> None:
    example = chat_example(chat_tok, CONVERSATION)
    _check_arrays(example)
    assert _weighted_runs(chat_tok, example) == [
        "12 + 30 = 42<|im_end|>\n",
        "1 + 1 = 2, you are welcome<|im_end|>\n",
    ]
    whole = render_chat(
        CHATML_TEMPLATE,
        CONVERSATION,
        bos_token=chat_tok.bos_token,
        eos_token=chat_tok.eos_token,
        add_generation_prompt=False,
    )
    tokens = example.tokens.tolist()
    start = 1 if chat_tok.bos_id is not None else 0
    assert chat_tok.decode(tokens[start:]) == whole
    assert tokens[start:] == chat_tok.encode(whole)  # no space or token inserted where pieces meet
    unweighted = chat_tok.decode([t for t, w in zip(tokens, example.weights.tolist(), strict=True) if w == 0.0])
    for message in CONVERSATION:
        if message["role"] != "assistant":
            assert message["content"] in unweighted
    assert "<|im_start|>assistant\n" in unweighted and "42" not in unweighted


def test_chat_single_turn_and_default_system(built: Path) -> None:
    tok = load_tokenizer(built / "chatml")
    example = chat_example(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert _weighted_runs(tok, example) == ["hello<|im_end|>\n"]
    assert tok.decode(example.tokens.tolist()).startswith("<|im_start|>system\nYou are a helpful assistant.")


def test_template_that_renders_bos_gets_no_second_one(built: Path) -> None:
    tok = load_tokenizer(built / "llama")
    assert tok.bos_token == "<s>" and tok.eos_token == "</s>"
    messages = [
        {"role": "user", "content": "add 2 and 3"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "and 4 and 4"},
        {"role": "assistant", "content": "8"},
    ]
    example = chat_example(tok, messages)
    tokens = example.tokens.tolist()
    assert tokens[0] == tok.bos_id and tokens[1] != tok.bos_id
    assert tokens.count(tok.bos_id) == 2  # one per user turn, as the template writes them
    assert _weighted_runs(tok, example) == [" 5 </s>", " 8 </s>"]


def test_chat_needs_a_template(built: Path) -> None:
    tok = load_tokenizer(built / "bare" / "tokenizer.json")
    with pytest.raises(DataError, match=r"^data\.messages_field: .*has none") as err:
        chat_example(tok, CONVERSATION)
    assert str(built / "bare" / "tokenizer.json") in str(err.value)


@pytest.mark.parametrize(
    "messages, expected",
    [
        ([{"role": "user", "content": "hi"}], "no assistant message"),
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        ([{"role": "user", "content": "hi"}, "assistant: hello"], "message 2 must be an object"),
        ([{"role": "user"}, {"role": "assistant", "content": "x"}], "message 1: 'content' must be a string"),
        ([{"role": "user", "content": "hi"}, {"role": 1, "content": "x"}], "message 2: 'role' must be a string"),
        ([{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}], "got list"),
    ],
)
def test_malformed_conversations_raise_value_error(built: Path, messages, expected: str) -> None:
    tok = load_tokenizer(built / "chatml")
    with pytest.raises(ValueError, match=expected) as err:
        chat_example(tok, messages)
    assert not isinstance(err.value, DataError)


def test_record_field_types_raise_value_error(built: Path) -> None:
    tok = load_tokenizer(built / "chatml")
    with pytest.raises(ValueError, match="completion must be a string, got int"):
        prompt_completion_example(tok, "1 + 1 =", 2)
    with pytest.raises(ValueError, match="text must be a string, got NoneType"):
        text_example(tok, None)


def test_template_that_is_not_incremental_is_refused(built: Path) -> None:
    tok = load_tokenizer(built / "chatml")
    # numbers each turn from the end: earlier text changes when a message is added
    template = "{% for m in messages %}[{{ loop.revindex }}]{{ m.content }}{% endfor %}"
    tok.chat_template = template
    with pytest.raises(ValueError, match="message 2 \\(assistant\\).*cannot be told apart"):
        chat_example(tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])


def test_template_errors_name_the_tokenizer() -> None:
    template = (
        "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with user') }}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="^data.tokenizer: chat template: Conversations must start with user$"):
        render_chat(
            template,
            [{"role": "assistant", "content": "x"}],
            bos_token=None,
            eos_token=None,
            add_generation_prompt=False,
        )
    with pytest.raises(DataError, match="^data.tokenizer: chat template: .*endfor"):
        render_chat("{% for m in messages %}", [], bos_token=None, eos_token=None, add_generation_prompt=False)


def test_render_matches_hugging_face_conventions() -> None:
    messages = [{"role": "user", "content": 'é "quoted"'}]
    text = render_chat(
        "{{ bos_token }}|{{ eos_token }}|{{ messages | tojson }}|{{ strftime_now('%d %b %Y') }}|"
        "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% break %}{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}",
        messages,
        bos_token=None,
        eos_token="</s>",
        add_generation_prompt=True,
    )
    # None tokens render as nothing; tojson keeps non-ASCII; the date is fixed so batches never depend on it
    assert text == '|</s>|[{"role": "user", "content": "é \\"quoted\\""}]|26 Jul 2024|é "quoted">'
    block = "{% if true %}\n  x\n{% endif %}\n"
    assert render_chat(block, [], bos_token=None, eos_token=None, add_generation_prompt=False) == "  x\n"
