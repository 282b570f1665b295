"""Tokenizers read from real files: Hugging Face tokenizer.json, SentencePiece, model folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from expspec.compiler.tokenizer_files import TokenizerNotFound, tokenizer_files
from expspec.runtime.data.base import DataError
from expspec.runtime.data.tokenizer import load_tokenizer
from tests.runtime.tokenizer_builders import (
    CHATML_SPECIALS,
    CHATML_TEMPLATE,
    bpe_tokenizer_json,
    chatml_folder,
    metaspace_tokenizer_json,
    sentencepiece_model,
    write_json,
)

TEXTS = [
    "Hello world, the model learns to add 1234 + 42 = 1276.",
    "  leading and  double  spaces\nand lines\n",
    "über café naïve 東京 — unseen: ∑ 🙂",
    "",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tokenizers")
    bpe_tokenizer_json(root / "bare" / "tokenizer.json", ["<s>", "</s>", "<pad>", *CHATML_SPECIALS])
    chatml_folder(root / "chatml")
    sentencepiece_model(root / "sp" / "tokenizer.model", ["<|im_start|>", "<|im_end|>"])
    for style in ("metaspace", "prepend"):
        metaspace_tokenizer_json(root / style / "tokenizer.json", style, ["<s>", "</s>", "<|im_end|>"])
    return root


def _copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_tokenizer_files_order_and_preference(built: Path, tmp_path: Path) -> None:
    folder = _copy_folder(built / "chatml", tmp_path / "model")
    (folder / "tokenizer.model").write_bytes((built / "sp" / "tokenizer.model").read_bytes())
    write_json(folder / "special_tokens_map.json", {"eos_token": "<|im_end|>"})
    (folder / "chat_template.jinja").write_text(CHATML_TEMPLATE, encoding="utf-8")
    (folder / "README.md").write_text("not part of the tokenizer", encoding="utf-8")
    names = [f.name for f in tokenizer_files(folder)]
    assert names == [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
    ]
    (folder / "tokenizer.json").unlink()
    assert [f.name for f in tokenizer_files(folder)][0] == "tokenizer.model"
    assert tokenizer_files(built / "sp" / "tokenizer.model") == (built / "sp" / "tokenizer.model",)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: p, "holds neither tokenizer.json nor tokenizer.model"),
        (lambda p: write_json(p / "tokenizer_config.json", {}), "name its folder"),
        (lambda p: (p / "vocab.txt").write_text("a\n") and p / "vocab.txt", "not a tokenizer file"),
    ],
)
def test_tokenizer_files_says_what_it_looked_for(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)
    with pytest.raises(TokenizerNotFound) as err:
        tokenizer_files(path)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_compiler_module_imports_no_tokenizer_library() -> None:
    code = (
        "import sys, expspec.compiler.tokenizer_files\n"
        "bad = [m for m in ('tokenizers', 'sentencepiece', 'jax', 'jinja2') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("where", ["bare/tokenizer.json", "chatml", "sp/tokenizer.model"])
def test_round_trip_and_batch(built: Path, where: str) -> None:
    tok = load_tokenizer(built / where)
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]
    assert tok.encode("") == []


PARTS = ["the model", "<|im_end|>", "learns to", " add", "<|im_end|>", "numbers"]
"""Parts of one text that meet at token boundaries: at special tokens and before spaces."""


@pytest.mark.parametrize(
    "where", ["bare/tokenizer.json", "sp/tokenizer.model", "metaspace/tokenizer.json", "prepend/tokenizer.json"]
)
def test_parts_continue_the_text_without_a_prefix_space(built: Path, where: str) -> None:
    # Encoding each part as a fresh text would put a SentencePiece dummy prefix (or a Metaspace "▁")
    # before "learns" and "numbers": a space the text does not have, inside the weighted tokens.
    tok = load_tokenizer(built / where)
    joined = [i for ids in tok.encode_parts(PARTS) for i in ids]
    assert tok.decode(joined) == "".join(PARTS)
    if not where.startswith("prepend"):  # older Prepend exports add a "▁" after every special token themselves
        assert joined == tok.encode("".join(PARTS))
    assert tok.encode_parts(PARTS)[0] == tok.encode(PARTS[0])
    assert tok.encode_parts([]) == []


def test_bare_tokenizer_json_finds_usual_special_names(built: Path) -> None:
    tok = load_tokenizer(built / "bare" / "tokenizer.json")
    assert tok.kind == "tokenizers"
    assert (tok.bos_token, tok.eos_token) == ("<s>", "</s>")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    assert tok.chat_template is None and tok.add_bos
    assert tok.vocab_size == 400


def test_model_folder_settings_win(built: Path) -> None:
    tok = load_tokenizer(built / "chatml")
    # bos_token null in the config: no BOS even though nothing else says so
    assert tok.bos_id is None and tok.bos_token is None
    assert (tok.eos_token, tok.eos_id) == ("<|im_end|>", 2)
    assert (tok.pad_token, tok.pad_id) == ("<|endoftext|>", 0)
    assert tok.chat_template == CHATML_TEMPLATE
    assert tok.files == (built / "chatml" / "tokenizer.json", built / "chatml" / "tokenizer_config.json")


def test_special_tokens_map_and_listed_templates(built: Path, tmp_path: Path) -> None:
    folder = _copy_folder(built / "chatml", tmp_path / "model")
    write_json(
        folder / "tokenizer_config.json",
        {
            "add_bos_token": False,
            "chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "chat"}],
        },
    )
    write_json(folder / "special_tokens_map.json", {"bos_token": "<|im_start|>", "eos_token": "<|endoftext|>"})
    tok = load_tokenizer(folder)
    assert (tok.bos_id, tok.eos_id) == (1, 0)
    assert tok.pad_id == tok.eos_id  # no pad anywhere: eos pads
    assert tok.chat_template == "chat" and tok.add_bos is False
    (folder / "chat_template.jinja").write_text("from the file", encoding="utf-8")
    assert load_tokenizer(folder).chat_template == "from the file"


def test_special_strings_are_single_ids(built: Path) -> None:
    for where in ("bare/tokenizer.json", "chatml", "sp/tokenizer.model"):
        tok = load_tokenizer(built / where)
        for token in ("<|im_start|>", "<|im_end|>"):
            ids = tok.encode(f"say{token}hi")
            assert ids.count(ids[len(tok.encode("say"))]) == 1
            assert tok.encode(token) == [ids[len(tok.encode("say"))]], (where, token)
            assert tok.decode(tok.encode(token)) == token
    sp = load_tokenizer(built / "sp" / "tokenizer.model")
    assert sp.encode("<s>x</s>")[0] == sp.bos_id and sp.encode("<s>x</s>")[-1] == sp.eos_id


def test_config_token_that_is_plain_vocabulary_is_split_out(built: Path, tmp_path: Path) -> None:
    # an ordinary merged token of the BPE, named as a special token, must become one id inside any text,
    # even where the BPE alone would merge its characters with their neighbours ("ers" is one token)
    folder = _copy_folder(built / "chatml", tmp_path / "model")
    tok0 = load_tokenizer(folder)
    (word_id,) = tok0.encode("er")
    texts = ["ers", "answer", "sers", "xerx"]
    assert any(word_id not in tok0.encode(text) for text in texts)
    write_json(folder / "tokenizer_config.json", {"bos_token": "er"})
    tok = load_tokenizer(folder)
    assert tok.bos_id == word_id and tok.vocab_size == tok0.vocab_size
    for text in texts:
        assert tok.encode(text).count(word_id) == 1 and tok.decode(tok.encode(text)) == text


def test_sentencepiece_specials_from_model_and_config(built: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(built / "sp" / "tokenizer.model")
    assert tok.kind == "sentencepiece"
    assert (tok.bos_token, tok.bos_id, tok.eos_token, tok.eos_id, tok.pad_id) == ("<s>", 1, "</s>", 2, 3)
    assert tok.vocab_size == 400

    folder = tmp_path / "sp_model"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes((built / "sp" / "tokenizer.model").read_bytes())
    write_json(
        folder / "tokenizer_config.json",
        {
            "bos_token": {"content": "<s>"},
            "eos_token": "<|im_end|>",
            "pad_token": "<extra_pad>",
            "added_tokens_decoder": {"400": {"content": "<extra_pad>", "special": True}},
        },
    )
    tok = load_tokenizer(folder)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (1, 5, 400, 401)
    ids = tok.encode("a<extra_pad>b")
    assert 400 in ids and tok.decode(ids) == "a<extra_pad>b"


@pytest.mark.parametrize(
    "damage, file, expected",
    [
        (lambda f: (f / "tokenizer.json").write_text("{not json"), "tokenizer.json", "not a Hugging Face tokenizer"),
        (lambda f: (f / "tokenizer.json").write_text('{"version": "1.0"}'), "tokenizer.json", "Hugging Face"),
        (lambda f: (f / "tokenizer.json").write_text(""), "tokenizer.json", "file is empty"),
        (lambda f: (f / "tokenizer.json").write_bytes(b"\xff\xfe{}"), "tokenizer.json", "not UTF-8"),
        (lambda f: (f / "tokenizer_config.json").write_text("{"), "tokenizer_config.json", "not valid JSON"),
        (lambda f: (f / "tokenizer_config.json").write_text("[1]"), "tokenizer_config.json", "JSON object"),
        (
            lambda f: write_json(f / "tokenizer_config.json", {"eos_token": "<|nowhere|>"}),
            "tokenizer_config.json",
            "eos_token '<|nowhere|>' is not in the vocabulary",
        ),
        (
            lambda f: (
                write_json(f / "tokenizer_config.json", {})
                and write_json(f / "special_tokens_map.json", {"pad_token": "[PAD]"})
            ),
            "special_tokens_map.json",
            "pad_token '[PAD]' is not in the vocabulary",
        ),
        (
            lambda f: write_json(f / "tokenizer_config.json", {"bos_token": 7}),
            "tokenizer_config.json",
            "bos_token must be a string",
        ),
        (
            lambda f: write_json(f / "tokenizer_config.json", {"chat_template": 3}),
            "tokenizer_config.json",
            "chat_template must be",
        ),
        (lambda f: (f / "tokenizer.json").unlink(), "", "holds neither tokenizer.json nor tokenizer.model"),
    ],
)
def test_hugging_face_folder_errors_name_key_and_file(
    built: Path, tmp_path: Path, damage, file: str, expected: str
) -> None:
    folder = _copy_folder(built / "chatml", tmp_path / "model")
    damage(folder)
    with pytest.raises(DataError) as err:
        load_tokenizer(folder)
    message = str(err.value)
    assert message.startswith("data.tokenizer: "), message
    assert str(folder / file) in message and expected in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "file is empty"), (b"certainly not a protobuf", "not a SentencePiece model")],
)
def test_sentencepiece_errors_name_key_and_file(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "tokenizer.model"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_tokenizer(path)
    message = str(err.value)
    assert message.startswith("data.tokenizer: ") and str(path) in message and expected in message, message
    assert "\n" not in message


def test_sentencepiece_config_naming_absent_token(built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sp_model"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes((built / "sp" / "tokenizer.model").read_bytes())
    write_json(folder / "tokenizer_config.json", {"pad_token": "<|not_here|>"})
    with pytest.raises(DataError, match=r"data.tokenizer: .*tokenizer_config.json: pad_token '<\|not_here\|>'"):
        load_tokenizer(folder)


def test_sentencepiece_bad_added_tokens(built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sp_model"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes((built / "sp" / "tokenizer.model").read_bytes())
    for table in ({"400": {"content": 5}}, [1], {"four hundred": {"content": "<x>"}}):
        write_json(folder / "tokenizer_config.json", {"added_tokens_decoder": table})
        with pytest.raises(DataError, match=r"^data.tokenizer: .*tokenizer_config.json: added_tokens_decoder must"):
            load_tokenizer(folder)


def test_saved_truncation_and_padding_do_not_cut_documents(built: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer as HFTokenizer

    saved = HFTokenizer.from_file(str(built / "bare" / "tokenizer.json"))
    saved.enable_truncation(max_length=4)
    saved.enable_padding(length=64, pad_id=2, pad_token="<pad>")
    saved.save(str(tmp_path / "tokenizer.json"))
    text = "the model learns to add numbers and reverse strings"
    assert load_tokenizer(tmp_path / "tokenizer.json").encode(text) == load_tokenizer(
        built / "bare" / "tokenizer.json"
    ).encode(text)
