"""Small real tokenizers trained in the test run, written the way model folders ship them."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

WORDS = (
    "the a model learns to add numbers and reverse strings while it reads short stories about cats dogs "
    "rivers mountains towns people who walk talk sing write answer question reply thanks hello world "
    "über café naïve 東京 42 1234 + = ? ! , . ; :"
).split()

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message.role != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""A ChatML template in the shape of Qwen2.5's (without tools)."""

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus(lines: int = 300, seed: int = 0) -> list[str]:
    """A few KB of sentences over WORDS, the same every time."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(lines)]


def bpe_tokenizer_json(path: Path, special_tokens: list[str]) -> Path:
    """A byte-level BPE tokenizer.json (GPT-2/Qwen style) trained on `corpus()`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def sentencepiece_model(path: Path, control_symbols: list[str] = ()) -> Path:
    """A SentencePiece BPE model with <unk>=0, <s>=1, </s>=2, <pad>=3 and byte fallback, so any text round-trips."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=model,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        pad_id=3,
        control_symbols=list(control_symbols),
        minloglevel=2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return path


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def chatml_folder(folder: Path) -> Path:
    """A Qwen-like model folder: tokenizer.json plus tokenizer_config.json with specials and chat template."""
    bpe_tokenizer_json(folder / "tokenizer.json", CHATML_SPECIALS)
    write_json(
        folder / "tokenizer_config.json",
        {
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": {"content": "<|endoftext|>", "special": True},
            "chat_template": CHATML_TEMPLATE,
        },
    )
    return folder


def metaspace_tokenizer_json(path: Path, style: str, special_tokens: list[str]) -> Path:
    """A BPE tokenizer.json that marks word starts with "▁" as Llama's do: through a Metaspace
    pre-tokenizer (style "metaspace") or a Prepend normalizer (style "prepend", older exports)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    if style == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        tok.decoder = decoders.Metaspace(prepend_scheme="first")
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", *special_tokens], show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path
