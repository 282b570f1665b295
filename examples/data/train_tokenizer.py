"""Train the byte-level BPE tokenizer that the text examples read, from the shipped corpus.

The tokenizer is committed, so a fresh machine never trains it; this script exists so that anyone can
check the committed bytes come from the committed corpus (run it and `git diff` shows nothing).

    python examples/data/train_tokenizer.py        # from any folder

Writes `text_tokenizer/tokenizer.json` and `text_tokenizer/tokenizer_config.json` next to this script.
"""

import json
import os
from pathlib import Path

# The trainer counts pairs on a thread pool. Its output does not depend on the thread count (checked),
# but one thread keeps that a guarantee rather than an observation. Must be set before the import.
os.environ["RAYON_NUM_THREADS"] = "1"

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "python_docs_topics.txt"
OUT = HERE / "text_tokenizer"

VOCAB_SIZE = 1024
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
MODEL_MAX_LENGTH = 1024


def build_tokenizer(lines: list[str]) -> Tokenizer:
    """Return a byte-level BPE tokenizer trained on `lines`: every byte encodes, so there is no unknown token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer, length=len(lines))
    return tokenizer


def tokenizer_config() -> dict:
    """Return the `tokenizer_config.json` content: the special tokens a reader needs (no chat template)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "model_max_length": MODEL_MAX_LENGTH,
    }


def main() -> None:
    """Train on the corpus (one line a training text) and write both files."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    tokenizer = build_tokenizer(lines)
    OUT.mkdir(exist_ok=True)
    tokenizer.save(str(OUT / "tokenizer.json"), pretty=True)
    config = json.dumps(tokenizer_config(), indent=2, ensure_ascii=False) + "\n"
    (OUT / "tokenizer_config.json").write_text(config, encoding="utf-8")
    print(f"wrote {OUT} (vocabulary {tokenizer.get_vocab_size()})")


if __name__ == "__main__":
    main()
