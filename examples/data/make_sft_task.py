"""Generate the supervised example task (multi-digit addition) and its character tokenizer.

The task is committed, so a fresh machine never generates it; this script exists so that anyone can
check the committed bytes come from a fixed seed (run it and `git diff` shows nothing).

    python examples/data/make_sft_task.py        # from any folder

Writes, next to this script, `sft_task/train.jsonl` (20,000 prompt/completion records),
`sft_task/eval.jsonl` (500 held-out records, no prompt shared with train), `sft_task/chat.jsonl`
(the first 2,000 training problems as chat records) and `sft_task/tokenizer/` (tokenizer.json and
tokenizer_config.json with a ChatML chat template).
"""

import json
import random
import string
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models

HERE = Path(__file__).resolve().parent
OUT = HERE / "sft_task"

SEED = 0
N_TRAIN, N_EVAL, N_CHAT = 20_000, 500, 2_000
MAX_OPERAND = 999
SYSTEM_PROMPT = "You add numbers."

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IM_START, IM_END]
# Printable ASCII and newline: every character of the rendered chat, and of a system prompt someone edits.
CHARACTERS = [*string.digits, *string.ascii_letters, *string.punctuation, " ", "\n"]
MODEL_MAX_LENGTH = 256

# ChatML, in the one-line form Hugging Face chat templates use: it renders the same with or without
# jinja2's trim_blocks/lstrip_blocks.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def draw_problems(rng: random.Random, count: int) -> list[tuple[int, int]]:
    """Return `count` distinct operand pairs, uniform in [0, MAX_OPERAND], in drawing order."""
    seen: set[tuple[int, int]] = set()
    problems = []
    while len(problems) < count:
        pair = (rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND))
        if pair not in seen:
            seen.add(pair)
            problems.append(pair)
    return problems


def completion_record(a: int, b: int) -> dict:
    """Return the prompt/completion record of `a + b`."""
    return {"prompt": f"{a}+{b}=", "completion": str(a + b)}


def chat_record(a: int, b: int) -> dict:
    """Return the chat record of `a + b`: a system turn, the question, the answer."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{a}+{b}"},
            {"role": "assistant", "content": str(a + b)},
        ]
    }


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Write one compact JSON object a line, with `\\n` endings on every platform."""
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")


def build_tokenizer() -> Tokenizer:
    """Return a character tokenizer: BPE with no merges, so each character is one token.

    The specials are added tokens, matched whole before the model sees the text; a character outside
    the alphabet becomes `<unk>` rather than vanishing, so a check can see it.
    """
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *CHARACTERS])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    return tokenizer


def tokenizer_config() -> dict:
    """Return the `tokenizer_config.json` content: special tokens and the ChatML chat template."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "additional_special_tokens": [IM_START, IM_END],
        "model_max_length": MODEL_MAX_LENGTH,
        "chat_template": CHAT_TEMPLATE,
    }


def main() -> None:
    """Draw the problems from the fixed seed and write the three record files and the tokenizer."""
    problems = draw_problems(random.Random(SEED), N_TRAIN + N_EVAL)
    train, held_out = problems[:N_TRAIN], problems[N_TRAIN:]
    (OUT / "tokenizer").mkdir(parents=True, exist_ok=True)
    write_jsonl(OUT / "train.jsonl", (completion_record(a, b) for a, b in train))
    write_jsonl(OUT / "eval.jsonl", (completion_record(a, b) for a, b in held_out))
    write_jsonl(OUT / "chat.jsonl", (chat_record(a, b) for a, b in train[:N_CHAT]))
    tokenizer = build_tokenizer()
    tokenizer.save(str(OUT / "tokenizer" / "tokenizer.json"), pretty=True)
    config = json.dumps(tokenizer_config(), indent=2, ensure_ascii=False) + "\n"
    (OUT / "tokenizer" / "tokenizer_config.json").write_text(config, encoding="utf-8")
    print(f"wrote {OUT} (vocabulary {tokenizer.get_vocab_size()})")


if __name__ == "__main__":
    main()
