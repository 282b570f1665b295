"""Which files define a tokenizer, so the plan can hash them without loading it.

The compiler fingerprints a run's inputs before any library is imported, so this
module uses the standard library only: it names the files (in a fixed order, so
the hash is stable) and the runtime's loader reads the same list.
"""

from __future__ import annotations

from pathlib import Path

from expspec.errors import BadInput

__all__ = [
    "CHAT_TEMPLATE_FILE",
    "CONFIG_FILE",
    "HF_TOKENIZER_FILE",
    "SENTENCEPIECE_FILE",
    "SPECIAL_TOKENS_FILE",
    "TokenizerNotFound",
    "tokenizer_files",
]

HF_TOKENIZER_FILE = "tokenizer.json"
"""A Hugging Face `tokenizers` tokenizer inside a model folder (preferred over SentencePiece)."""
SENTENCEPIECE_FILE = "tokenizer.model"
"""A SentencePiece model inside a model folder."""
CONFIG_FILE = "tokenizer_config.json"
"""BOS/EOS/pad and the chat template of a model folder."""
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
"""Older model folders keep BOS/EOS/pad here instead of in the config."""
CHAT_TEMPLATE_FILE = "chat_template.jinja"
"""Newer model folders keep the chat template in its own file; it wins over the config's."""

_COMPANIONS = (CONFIG_FILE, SPECIAL_TOKENS_FILE, CHAT_TEMPLATE_FILE)


class TokenizerNotFound(BadInput, ValueError):
    """`data.tokenizer` names nothing a tokenizer can be loaded from."""


def tokenizer_files(path: Path) -> tuple[Path, ...]:
    """The files whose bytes define the tokenizer at `path`, the tokenizer itself first.

    `path` is a `tokenizer.json` (any `*.json` holding a Hugging Face tokenizer) or a
    SentencePiece `*.model` file, or a model folder holding `tokenizer.json` (preferred)
    or `tokenizer.model` plus, when present, `tokenizer_config.json`,
    `special_tokens_map.json` and `chat_template.jinja`: they carry BOS/EOS/pad and the
    chat template, which change the tokens a run trains on. Raises TokenizerNotFound
    (one line naming the path and what was looked for) when nothing usable is there.
    """
    path = Path(path)
    if path.is_dir():
        for name in (HF_TOKENIZER_FILE, SENTENCEPIECE_FILE):
            if (path / name).is_file():
                companions = [path / extra for extra in _COMPANIONS if (path / extra).is_file()]
                return (path / name, *companions)
        raise TokenizerNotFound(f"{path}: folder holds neither {HF_TOKENIZER_FILE} nor {SENTENCEPIECE_FILE}")
    if path.is_file():
        if path.name in (CONFIG_FILE, SPECIAL_TOKENS_FILE):
            raise TokenizerNotFound(
                f"{path}: is a tokenizer's settings, not a tokenizer; name its folder ({path.parent}) instead"
            )
        if path.suffix in (".json", ".model"):
            return (path,)
        raise TokenizerNotFound(
            f"{path}: not a tokenizer file; expected a {HF_TOKENIZER_FILE}, a SentencePiece *.model file "
            "or a model folder holding one"
        )
    raise TokenizerNotFound(
        f"{path}: no such file or folder; expected a {HF_TOKENIZER_FILE}, a SentencePiece *.model file "
        "or a model folder holding one"
    )
