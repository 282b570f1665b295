"""A tokenizer read from the files `data.tokenizer` names: Hugging Face `tokenizers` or SentencePiece.

One small interface over both libraries, so the text sources do not care which
kind a model ships: encode without BOS/EOS (the examples add them where they
belong), special-token strings in the text become their single ids, and the
BOS/EOS/pad ids and chat template come from the model folder's settings the way
Hugging Face reads them. Each library is imported only by the loader that needs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expspec.compiler.tokenizer_files import (
    CHAT_TEMPLATE_FILE,
    CONFIG_FILE,
    SPECIAL_TOKENS_FILE,
    TokenizerNotFound,
    tokenizer_files,
)
from expspec.runtime.data.base import DataError, read_bytes
from expspec.runtime.data.tokenizer_codecs import Codec, HuggingFaceCodec, SentencePieceCodec

__all__ = ["Tokenizer", "load_tokenizer"]

KEY = "data.tokenizer"


class Tokenizer:
    """Text to token ids and back, with the special tokens and chat template a run needs."""

    def __init__(
        self,
        *,
        files: tuple[Path, ...],
        codec: Codec,
        vocab_size: int,
        specials: dict[str, tuple[str, int] | None],
        chat_template: str | None,
        add_bos: bool,
    ) -> None:
        self.files = files
        """The files that define it, the tokenizer file first (`tokenizer_files`)."""
        self.kind: str = codec.kind
        """`tokenizers` or `sentencepiece`: the library that encodes."""
        self.vocab_size = vocab_size
        """Ids run from 0 to vocab_size - 1, added and special tokens included."""
        self.bos_token, self.bos_id = specials["bos"] or (None, None)
        self.eos_token, self.eos_id = specials["eos"] or (None, None)
        pad = specials["pad"] or specials["eos"]
        self.pad_token: str | None = pad[0] if pad else None
        self.pad_id: int = pad[1] if pad else 0
        """Rows are padded with it (pad, else eos, else 0); padded positions always weigh 0."""
        self.chat_template = chat_template
        """The Jinja chat template of the model folder, None when it has none."""
        self.add_bos = add_bos
        """False when tokenizer_config.json says `add_bos_token: false`: the model was trained without BOS."""
        self._codec = codec

    @property
    def bos_prefix(self) -> list[int]:
        """What starts every sequence: `[bos_id]`, or nothing when the tokenizer has no BOS or
        its config says the model was trained without one."""
        return [self.bos_id] if self.add_bos and self.bos_id is not None else []

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, no BOS/EOS added; special-token strings become their single ids."""
        return self._codec.encode([text], [True])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of each text, in one call to the library."""
        return self._codec.encode(list(texts), [True] * len(texts))

    def encode_parts(self, parts: list[str]) -> list[list[int]]:
        """Token ids of consecutive parts of one text: the first encoded as its start, the rest as continuations.

        A continuation gets no SentencePiece dummy prefix (or Metaspace/byte-level prefix
        space), so the joined lists are the tokens of the whole text wherever the parts
        meet at a token boundary: loss weights can then follow the parts exactly.
        """
        return self._codec.encode(list(parts), [i == 0 for i in range(len(parts))])

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens written out as their strings."""
        return self._codec.decode([int(i) for i in ids])

    def __repr__(self) -> str:
        return f"Tokenizer({self.files[0]}, kind={self.kind}, vocab_size={self.vocab_size})"


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer `data.tokenizer` names; DataError (one line naming the file) when it cannot be used."""
    try:
        files = tokenizer_files(Path(path))
    except TokenizerNotFound as err:
        raise DataError(f"{KEY}: {err}") from None
    by_name = {f.name: f for f in files[1:]}
    config = _settings(by_name.get(CONFIG_FILE))
    special_map = _settings(by_name.get(SPECIAL_TOKENS_FILE))
    codec: Codec
    if files[0].suffix == ".model":
        added = _added_tokens(config, by_name.get(CONFIG_FILE))
        codec = SentencePieceCodec(files[0], read_bytes(files[0], KEY), added)
    else:
        codec = HuggingFaceCodec(files[0], _text(files[0]))
    specials = {name: _special(name, codec, config, special_map, by_name, files[0]) for name in ("bos", "eos", "pad")}
    codec.mark_special([found[0] for found in specials.values() if found])
    chat_template = _chat_template(config, by_name)
    add_bos = config.get("add_bos_token") is not False
    return Tokenizer(
        files=files,
        codec=codec,
        vocab_size=codec.vocab_size,
        specials=specials,
        chat_template=chat_template,
        add_bos=add_bos,
    )


def _special(
    name: str, codec: Codec, config: dict, special_map: dict, by_name: dict[str, Path], tokenizer_file: Path
) -> tuple[str, int] | None:
    """(string, id) of BOS/EOS/pad: the config, else special_tokens_map.json, else the tokenizer's own."""
    key = f"{name}_token"
    for settings, file_name in ((config, CONFIG_FILE), (special_map, SPECIAL_TOKENS_FILE)):
        if key not in settings:
            continue
        where = by_name[file_name]
        token = _token_text(settings[key], where, key)
        if token is None:
            return None
        token_id = codec.token_id(token)
        if token_id is None:
            raise DataError(f"{KEY}: {where}: {key} {token!r} is not in the vocabulary of {tokenizer_file}")
        return token, token_id
    return codec.usual_special(name)


def _token_text(value: Any, where: Path, key: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"] or None
    raise DataError(f"{KEY}: {where}: {key} must be a string or an object with a 'content' string")


def _chat_template(config: dict, by_name: dict[str, Path]) -> str | None:
    """The template file's text, else the config's `chat_template` (its "default" when it lists several)."""
    if CHAT_TEMPLATE_FILE in by_name:
        return _text(by_name[CHAT_TEMPLATE_FILE])
    template = config.get("chat_template")
    if template is None or isinstance(template, str):
        return template or None
    if isinstance(template, list) and all(isinstance(t, dict) for t in template):
        named = {t.get("name"): t.get("template") for t in template}
        chosen = named.get("default")
        if chosen is None or isinstance(chosen, str):
            return chosen or None
    raise DataError(
        f"{KEY}: {by_name[CONFIG_FILE]}: chat_template must be a string or a list of {{name, template}} objects"
    )


def _added_tokens(config: dict, where: Path | None) -> dict[int, str]:
    """`added_tokens_decoder` of the config: tokens a SentencePiece model was extended with."""
    table = config.get("added_tokens_decoder", {})
    try:
        added = {int(i): entry["content"] for i, entry in table.items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        added = None
    if added is None or not all(isinstance(text, str) and text for text in added.values()) or min(added, default=0) < 0:
        raise DataError(f"{KEY}: {where}: added_tokens_decoder must map ids to objects with a 'content' string")
    return added


def _settings(path: Path | None) -> dict:
    """A JSON settings file as a dict; {} when the folder has none."""
    if path is None:
        return {}
    try:
        settings = json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{KEY}: {path}: not valid JSON: {err}") from None
    if not isinstance(settings, dict):
        raise DataError(f"{KEY}: {path}: must hold a JSON object, got {type(settings).__name__}")
    return settings


def _text(path: Path) -> str:
    data = read_bytes(path, KEY)
    if not data.strip():
        raise DataError(f"{KEY}: {path}: file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{KEY}: {path}: not UTF-8 text (byte {err.start})") from None
