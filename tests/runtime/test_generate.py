"""Generation: the KV-cache decode loop against full forwards, EOS, seeded sampling, `exp sample`."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from expspec.compiler.decoder_config import DecoderConfig
from expspec.runtime.data.tokenizer import load_tokenizer
from expspec.runtime.generate import _decode_loop, exact_match, generate, sample_run
from expspec.runtime.models.common import ModelError
from expspec.runtime.models.decoder import DecoderLM
from tests.conftest import EXAMPLES
from tests.runtime.runs import DIGITS, exp, run_json

SFT = EXAMPLES / "sft_task.toml"
TOKENIZER = EXAMPLES / "data" / "sft_task" / "tokenizer"
PROMPTS = [[1, 5, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3]]
"""Three lengths in one batch: the short rows are padded, the long one spans a second bucket."""


def _tiny(vocab: int = 64, family: str = "qwen3") -> DecoderLM:
    config = DecoderConfig(
        family=family, vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, qk_norm=family == "qwen3",
        attention_bias=family == "qwen2",
    )  # fmt: skip
    return DecoderLM(config, rngs=nnx.Rngs(params=0))


def _greedy_by_full_forwards(model: DecoderLM, prompt: list[int], count: int) -> list[int]:
    """Argmax of the whole sequence's forward, recomputed for every new token: no cache at all.

    The sequence sits at the start of a fixed-width row (causal attention: what follows
    it changes none of its logits), so one compiled forward serves every step."""
    forward = nnx.jit(lambda m, x: m(x))
    row = np.zeros((1, 32), np.int32)
    row[0, : len(prompt)] = prompt
    length = len(prompt)
    for _ in range(count):
        row[0, length] = int(jnp.argmax(forward(model, jnp.asarray(row))[0, length - 1]))
        length += 1
    return row[0, len(prompt) : length].tolist()


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_cached_greedy_decoding_equals_argmax_of_full_forwards(family):
    model = _tiny(family=family)
    out = generate(model, PROMPTS, max_new_tokens=7, eos_id=None, pad_id=0)
    assert out == [_greedy_by_full_forwards(model, prompt, 7) for prompt in PROMPTS]
    # A row's tokens do not depend on the rows padded beside it.
    assert generate(model, PROMPTS[:1], max_new_tokens=7, eos_id=None, pad_id=0) == out[:1]


def test_eos_ends_a_row_and_is_left_out():
    model = _tiny()
    free = generate(model, PROMPTS, max_new_tokens=8, eos_id=None, pad_id=0)
    eos = free[0][2]
    assert eos not in free[0][:2]

    def cut(row: list[int]) -> list[int]:
        return row[: row.index(eos)] if eos in row else row

    # pad == eos as well, as tokenizers without a pad token have it.
    for pad in (0, eos):
        stopped = generate(model, PROMPTS, max_new_tokens=8, eos_id=eos, pad_id=pad)
        assert stopped == [cut(row) for row in free]
        assert stopped[0] == free[0][:2]
    # Several end tokens (Llama 3's list): the first of any ends the row.
    other = next(token for token in range(64) if token not in free[0])
    assert generate(model, PROMPTS, max_new_tokens=8, eos_id=[other, eos], pad_id=0)[0] == free[0][:2]


def test_sampling_is_reproducible_by_seed_and_differs_across_seeds():
    model = _tiny()
    kwargs = dict(max_new_tokens=8, eos_id=None, pad_id=0, temperature=1.5)
    first = generate(model, PROMPTS, seed=1, **kwargs)
    assert generate(model, PROMPTS, seed=1, **kwargs) == first
    assert generate(model, PROMPTS, seed=2, **kwargs) != first
    assert first != generate(model, PROMPTS, max_new_tokens=8, eos_id=None, pad_id=0)  # not greedy


def test_prompts_of_one_length_bucket_share_one_compiled_loop():
    model = _tiny()
    generate(model, [[1, 2, 3]], max_new_tokens=5, eos_id=2, pad_id=0)
    before = _decode_loop._cache_size()
    generate(model, [[4, 5, 6, 7, 8]], max_new_tokens=5, eos_id=2, pad_id=0)
    generate(model, [[9]], max_new_tokens=5, eos_id=2, pad_id=0)
    assert _decode_loop._cache_size() == before


def test_bad_arguments_are_model_errors():
    model = _tiny()
    with pytest.raises(ModelError, match="prompt 1 has no tokens"):
        generate(model, [[1], []], max_new_tokens=3, eos_id=None, pad_id=0)
    with pytest.raises(ModelError, match="temperature"):
        generate(model, [[1]], max_new_tokens=3, eos_id=None, pad_id=0, temperature=-1.0)
    assert generate(model, [[1], [2]], max_new_tokens=0, eos_id=None, pad_id=0) == [[], []]


def test_exact_match_counts_completions_the_model_writes():
    tokenizer = load_tokenizer(TOKENIZER)
    model = _tiny(vocab=tokenizer.vocab_size)
    prompts = ["12+34=", "7+8=", "100+1="]
    bos = [tokenizer.bos_id]
    written = generate(
        model, [bos + tokenizer.encode(p) for p in prompts], max_new_tokens=4, eos_id=tokenizer.eos_id, pad_id=0
    )
    examples = [(p, tokenizer.decode(w)) for p, w in zip(prompts, written, strict=True)]
    assert exact_match(model, tokenizer, examples, max_new_tokens=4) == 1.0
    examples[1] = (prompts[1], examples[1][1] + "9")
    assert exact_match(model, tokenizer, examples, max_new_tokens=4, batch_size=2) == pytest.approx(2 / 3)


TINY_LLAMA = (
    "model={kind='llama', hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, "
    "num_key_value_heads=1, max_position_embeddings=32}"
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("sample") / "run"
    summary = run_json(
        str(SFT), TINY_LLAMA, "train.steps=4", "train.eval_every=0", "data.batch_size=8", "--run-dir", str(run_dir)
    )
    assert summary["outcome"] == "finished" and summary["checkpoint"] == 4
    return run_dir


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_exp_sample_writes_the_run_models_completion(trained_run):
    before = _listing(trained_run)
    args = ("sample", str(trained_run), "--prompt", "12+34=", "--max-new-tokens", "6")
    shown = exp(*args, "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    completion = sample_run(trained_run, "12+34=", max_new_tokens=6)
    assert record == {
        "text": completion.text,
        "tokens": completion.tokens,
        "prompt_tokens": completion.prompt_tokens,
        "step": 4,
    }
    tokenizer = load_tokenizer(TOKENIZER)
    assert completion.prompt_tokens == [tokenizer.bos_id, *tokenizer.encode("12+34=")]
    assert completion.text == tokenizer.decode(completion.tokens) and len(completion.tokens) <= 6
    plain = exp(*args)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == completion.text + "\n"
    assert _listing(trained_run) == before, "exp sample changed the run directory"


def test_exp_sample_refuses_bad_input_in_one_line(trained_run, tmp_path):
    absent = exp("sample", str(trained_run), "--prompt", "1+1=", "--step", "3")
    assert absent.returncode == 2 and "--step 3" in absent.stderr
    assert len(absent.stderr.strip().splitlines()) == 1 and "Traceback" not in absent.stderr
    nothing = exp("sample", str(tmp_path / "nowhere"), "--prompt", "1+1=")
    assert nothing.returncode == 2 and "nowhere" in nothing.stderr
    assert len(nothing.stderr.strip().splitlines()) == 1


def test_exp_sample_refuses_a_model_that_writes_no_text(tmp_path):
    run_json(str(DIGITS), "train.steps=2", "model.hidden=[16]", "--run-dir", str(tmp_path / "mlp"))
    refused = exp("sample", str(tmp_path / "mlp"), "--prompt", "1+1=")
    assert refused.returncode == 2 and "model.kind 'mlp'" in refused.stderr and "'llama'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
