"""The two tokenizer libraries behind one small interface, each imported only when its kind is loaded.

Both encode a text's first part as the start of a document and every later part
(after a special token, or a later piece of one document) as a continuation: no
SentencePiece dummy prefix, no Metaspace or byte-level prefix space. Then the
tokens of the pieces of a document, joined, are the tokens of the document
wherever its pieces meet at token boundaries, which is what exact loss weights need.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from expspec.runtime.data.base import DataError

__all__ = ["Codec", "HuggingFaceCodec", "SentencePieceCodec", "USUAL_NAMES", "one_line"]

KEY = "data.tokenizer"

USUAL_NAMES = {
    "bos": ("<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "[BOS]"),
    "eos": ("</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>", "<|eos|>", "[EOS]"),
    "pad": ("<pad>", "<|pad|>", "<|padding|>", "[PAD]"),
}
"""Special tokens a bare tokenizer.json is searched for when no settings file names them."""


class Codec(Protocol):
    """What `Tokenizer` needs from a library."""

    kind: str
    vocab_size: int

    def token_id(self, token: str) -> int | None: ...

    def usual_special(self, name: str) -> tuple[str, int] | None: ...

    def mark_special(self, tokens: list[str]) -> None: ...

    def encode(self, texts: Sequence[str], starts: Sequence[bool]) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...


class HuggingFaceCodec:
    """A `tokenizers.Tokenizer`, with truncation and padding off so documents keep every token."""

    kind = "tokenizers"

    def __init__(self, path: Path, text: str) -> None:
        import tokenizers

        try:
            self._tok = tokenizers.Tokenizer.from_str(text)
            settings = json.loads(text)
        except Exception as err:  # the Rust side raises a bare Exception
            raise DataError(f"{KEY}: {path}: not a Hugging Face tokenizer: {one_line(err)}") from None
        continued = _without_prefix_space(settings)
        self._continued = self._tok if continued is None else tokenizers.Tokenizer.from_str(json.dumps(continued))
        for tok in (self._tok, self._continued):
            tok.no_truncation()
            tok.no_padding()
        self._added = self._tok.get_added_tokens_decoder()
        vocab = self._tok.get_vocab(with_added_tokens=True)
        if not vocab:
            raise DataError(f"{KEY}: {path}: the tokenizer has an empty vocabulary")
        self.vocab_size = max(vocab.values()) + 1

    def token_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def usual_special(self, name: str) -> tuple[str, int] | None:
        special = {added.content: i for i, added in self._added.items() if added.special}
        for token in USUAL_NAMES[name]:
            if token in special:
                return token, special[token]
        return None

    def mark_special(self, tokens: list[str]) -> None:
        """Named special tokens that are plain vocabulary entries are split out of text too, as in transformers."""
        import tokenizers

        known = {added.content for added in self._added.values()}
        missing = [tokenizers.AddedToken(t, special=True, normalized=False) for t in tokens if t not in known]
        if missing:
            self._tok.add_special_tokens(missing)
            if self._continued is not self._tok:
                self._continued.add_special_tokens(missing)

    def encode(self, texts: Sequence[str], starts: Sequence[bool]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in texts]
        for tok, wanted in ((self._tok, True), (self._continued, False)):
            index = [i for i, start in enumerate(starts) if start == wanted and texts[i]]
            if index:
                encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
                for i, encoding in zip(index, encode([texts[i] for i in index], add_special_tokens=False), strict=True):
                    out[i] = encoding.ids
        return out

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


def _without_prefix_space(settings: Any) -> dict | None:
    """The tokenizer.json settings with every prefix space turned off; None when it adds none."""
    if not isinstance(settings, dict):
        return None
    changed = False

    def pre_tokenizer(node: Any) -> Any:
        nonlocal changed
        if not isinstance(node, dict):
            return node
        if node.get("type") == "Sequence":
            return {**node, "pretokenizers": [pre_tokenizer(n) for n in node.get("pretokenizers", [])]}
        if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") != "never":
            changed = True
            return {
                **node,
                "prepend_scheme": "never",
                **({"add_prefix_space": False} if "add_prefix_space" in node else {}),
            }
        if node.get("type") == "ByteLevel" and node.get("add_prefix_space"):
            changed = True
            return {**node, "add_prefix_space": False}
        return node

    def normalizer(node: Any) -> Any:
        nonlocal changed
        if not isinstance(node, dict):
            return node
        if node.get("type") == "Prepend":
            changed = True
            return None
        if node.get("type") == "Sequence":
            kept = [normalizer(n) for n in node.get("normalizers", [])]
            return {**node, "normalizers": [n for n in kept if n is not None]}
        return node

    result = {**settings, "pre_tokenizer": pre_tokenizer(settings.get("pre_tokenizer"))}
    result["normalizer"] = normalizer(settings.get("normalizer"))
    return result if changed else None


class SentencePieceCodec:
    """A SentencePiece model; special-token strings are split out first, as transformers does.

    SentencePiece itself never reads control symbols (`<s>`, `<|im_start|>`) from text, so
    text is cut at every special string and the parts between are encoded alone; a
    second processor without the dummy prefix encodes the parts that continue a text.
    """

    kind = "sentencepiece"

    def __init__(self, path: Path, data: bytes, added: dict[int, str]) -> None:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2

        if not data:
            raise DataError(f"{KEY}: {path}: file is empty")
        proto = sentencepiece_model_pb2.ModelProto()
        try:
            proto.ParseFromString(data)
            self._sp = sentencepiece.SentencePieceProcessor(model_proto=data)
        except Exception as err:  # protobuf's DecodeError or SentencePiece's RuntimeError
            raise DataError(f"{KEY}: {path}: not a SentencePiece model ({one_line(err)})") from None
        if not proto.pieces:
            raise DataError(f"{KEY}: {path}: the SentencePiece model has no pieces")
        self._continued = self._sp
        if proto.normalizer_spec.add_dummy_prefix:
            proto.normalizer_spec.add_dummy_prefix = False
            self._continued = sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString())
        kinds = sentencepiece_model_pb2.ModelProto.SentencePiece
        special_kinds = (kinds.UNKNOWN, kinds.CONTROL, kinds.USER_DEFINED)
        self._text_of = {i: piece.piece for i, piece in enumerate(proto.pieces) if piece.type in special_kinds}
        self._text_of.update(added)
        self._id_of = {text: i for i, text in self._text_of.items() if text}
        self._split = _splitter(self._id_of)
        self.vocab_size = max(len(proto.pieces), max(added, default=-1) + 1)

    def token_id(self, token: str) -> int | None:
        if token in self._id_of:
            return self._id_of[token]
        i = self._sp.piece_to_id(token)
        return i if self._sp.id_to_piece(i) == token else None

    def usual_special(self, name: str) -> tuple[str, int] | None:
        i = {"bos": self._sp.bos_id, "eos": self._sp.eos_id, "pad": self._sp.pad_id}[name]()
        return (self._sp.id_to_piece(i), i) if i >= 0 else None

    def mark_special(self, tokens: list[str]) -> None:
        for token in tokens:
            self._id_of.setdefault(token, self.token_id(token))
            self._text_of.setdefault(self._id_of[token], token)
        self._split = _splitter(self._id_of)

    def encode(self, texts: Sequence[str], starts: Sequence[bool]) -> list[list[int]]:
        split = [self._split(text) for text in texts]
        # Only the plain part that opens a starting text gets the dummy prefix.
        jobs = [
            (start and j == 0, part)
            for parts, start in zip(split, starts, strict=True)
            for j, part in enumerate(parts)
            if isinstance(part, str)
        ]
        opening = [part for opener, part in jobs if opener]
        rest = [part for opener, part in jobs if not opener]
        encoded = {
            True: iter(self._sp.encode(opening) if opening else []),
            False: iter(self._continued.encode(rest) if rest else []),
        }
        out = []
        for parts, start in zip(split, starts, strict=True):
            ids: list[int] = []
            for j, part in enumerate(parts):
                if isinstance(part, int):
                    ids.append(part)
                else:
                    ids.extend(next(encoded[start and j == 0]))
            out.append(ids)
        return out

    def decode(self, ids: list[int]) -> str:
        out: list[str] = []
        run: list[int] = []
        for position, i in enumerate([*ids, None]):
            text = None if i is None else self._text_of.get(i)
            if i is not None and text is None:
                run.append(i)
                continue
            if run:
                # only a run at the very start had the dummy prefix added, so only it loses a leading space
                opener = position == len(run)
                out.append((self._sp if opener else self._continued).decode(run))
                run = []
            if text is not None:
                out.append(text)
        return "".join(out)


def _splitter(id_of: dict[str, int]) -> Callable[[str], list[str | int]]:
    """text -> its parts: plain strings and the ids of the special strings between them."""
    if not id_of:
        return lambda text: [text] if text else []
    pattern = re.compile("|".join(re.escape(t) for t in sorted(id_of, key=len, reverse=True)))

    def split(text: str) -> list[str | int]:
        parts: list[str | int] = []
        start = 0
        for match in pattern.finditer(text):
            if match.start() > start:
                parts.append(text[start : match.start()])
            parts.append(id_of[match.group()])
            start = match.end()
        if start < len(text):
            parts.append(text[start:])
        return parts

    return split


def one_line(err: BaseException) -> str:
    """An exception's message on one line, for errors that must stay one line."""
    return " ".join(str(err).split()) or type(err).__name__
