"""Text from a trained decoder: batched KV-cache decoding, greedy or seeded sampling, exact match.

For looking at what a fine-tune learned, not for serving. Prompts are
right-padded into one batch and prefilled through the model's KV cache
(`DecoderLM.init_cache` / `decode`); each row then continues from its own
length, so padding never enters a row's attention (a new token at cache slot i
sees slots < i + 1 only, which are its own prompt and its own output). The
one-token steps run inside one `jax.lax.while_loop`, compiled once per
(batch, prompt length bucket, max_new_tokens, greedy or not): the prompt length
is rounded up to a power of two, so prompts of similar lengths share a program.
The same call gives the same tokens: sampling draws step s's tokens with
`fold_in(key(seed), s)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from expspec.errors import BadInput
from expspec.runtime.models.common import ModelError

__all__ = ["Completion", "SampleError", "exact_match", "generate", "sample", "sample_run"]

_MIN_BUCKET = 8
"""The shortest padded prompt: tiny prompts all share one program."""


def _bucket(length: int) -> int:
    return max(_MIN_BUCKET, 1 << (length - 1).bit_length())


def _eos_ids(eos_id: int | Sequence[int] | None) -> np.ndarray:
    if eos_id is None:
        return np.zeros((0,), np.int32)
    ids = [eos_id] if isinstance(eos_id, int) else list(eos_id)
    return np.asarray(ids, np.int32)


def generate(
    model: nnx.Module,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int | Sequence[int] | None,
    pad_id: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[list[int]]:
    """The new tokens after each prompt (the prompt and the EOS that ended a row left out).

    Greedy when `temperature` is 0, else sampled from softmax(logits / temperature).
    A row stops at its first EOS (`eos_id`: one id, several, or None for never);
    at most `max_new_tokens` tokens each. `model` is a `DecoderLM` (anything with
    its `init_cache` / `decode`). Raises ModelError for an empty prompt, a token
    outside the vocabulary is the caller's to avoid.
    """
    _check_settings(max_new_tokens, temperature)
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ModelError(f"prompt {i} has no tokens; a decoder needs at least one (e.g. BOS) to continue")
    if not prompts or max_new_tokens == 0:
        return [[] for _ in prompts]
    lengths = np.asarray([len(p) for p in prompts], np.int32)
    tokens = np.full((len(prompts), _bucket(int(lengths.max()))), pad_id, np.int32)
    for row, prompt in enumerate(prompts):
        tokens[row, : len(prompt)] = prompt
    graphdef, state = nnx.split(model)
    greedy = temperature == 0.0
    out, counts = _decode_loop(
        graphdef,
        state,
        jnp.asarray(tokens),
        jnp.asarray(lengths),
        jnp.asarray(_eos_ids(eos_id)),
        jnp.int32(pad_id),
        jnp.float32(1.0 if greedy else temperature),
        jax.random.key(seed),
        max_new_tokens=max_new_tokens,
        greedy=greedy,
    )
    out, counts = np.asarray(out), np.asarray(counts)
    return [out[row, : counts[row]].tolist() for row in range(len(prompts))]


def _check_settings(max_new_tokens: int, temperature: float) -> None:
    if max_new_tokens < 0:
        raise ModelError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not temperature >= 0 or not np.isfinite(temperature):
        raise ModelError(f"temperature must be a finite number >= 0, got {temperature}")


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "greedy"))
def _decode_loop(
    graphdef: Any,
    state: Any,
    tokens: jax.Array,
    lengths: jax.Array,
    eos: jax.Array,
    pad_id: jax.Array,
    temperature: jax.Array,
    key: jax.Array,
    *,
    max_new_tokens: int,
    greedy: bool,
) -> tuple[jax.Array, jax.Array]:
    """([B, max_new_tokens] tokens, pad after a row's end; [B] new tokens per row before its EOS)."""
    model = nnx.merge(graphdef, state)
    batch, width = tokens.shape
    cache = model.init_cache(batch, width + max_new_tokens)
    positions = jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32), (batch, width))
    logits, cache = model.decode(tokens, positions=positions, cache=cache, start=0)
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0].astype(jnp.float32)

    def pick(step_logits: jax.Array, step: jax.Array) -> jax.Array:
        if greedy:
            return jnp.argmax(step_logits, axis=-1).astype(jnp.int32)
        step_key = jax.random.fold_in(key, step)
        return jax.random.categorical(step_key, step_logits / temperature, axis=-1).astype(jnp.int32)

    def row_step(token: jax.Array, where: jax.Array, row_cache: Any) -> tuple[jax.Array, Any]:
        # One row, continuing from its own length: `start` differs per row under vmap.
        one = jax.tree.map(lambda a: a[None], row_cache)
        step_logits, one = model.decode(token.reshape(1, 1), positions=where.reshape(1, 1), cache=one, start=where)
        return step_logits[0, -1].astype(jnp.float32), jax.tree.map(lambda a: a[0], one)

    rows_step = jax.vmap(row_step)

    def emit(token: jax.Array, done: jax.Array, out: jax.Array, count: jax.Array, step: jax.Array):
        finished = done | jnp.any(token[:, None] == eos[None, :], axis=-1)
        out = out.at[:, step].set(jnp.where(finished, pad_id, token))
        return finished, out, count + (~finished).astype(jnp.int32)

    first = pick(last, jnp.int32(0))
    out = jnp.full((batch, max_new_tokens), pad_id, jnp.int32)
    done, out, count = emit(first, jnp.zeros((batch,), bool), out, jnp.zeros((batch,), jnp.int32), 0)

    def cond(carry: tuple) -> jax.Array:
        step, _, done, _, _, _ = carry
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(carry: tuple) -> tuple:
        step, token, done, out, count, cache = carry
        step_logits, cache = rows_step(token, lengths + step - 1, cache)
        token = pick(step_logits, step)
        done, out, count = emit(token, done, out, count, step)
        return step + 1, token, done, out, count, cache

    carry = (jnp.int32(1), first, done, out, count, cache)
    _, _, _, out, count, _ = jax.lax.while_loop(cond, body, carry)
    return out, count


def exact_match(
    model: nnx.Module,
    tokenizer: Any,
    examples: Sequence[tuple[str, str]],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
) -> float:
    """The share of (prompt, completion) pairs whose greedy completion decodes to the completion's text.

    Prompts are tokenised as training tokenises them (`prompt_completion_example`:
    BOS when the tokenizer adds it, then the prompt). The reference is the
    completion's own tokens decoded, so a tokenizer that normalises text on the
    way (a SentencePiece leading space) does not count against the model.
    `tokenizer` is a `runtime.data.tokenizer.Tokenizer`. 0.0 for no examples.
    """
    if not examples:
        return 0.0
    bos = tokenizer.bos_prefix
    hits = 0
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin : begin + batch_size]
        parts = [tokenizer.encode_parts([prompt, completion]) for prompt, completion in chunk]
        outputs = generate(
            model,
            [bos + prompt_ids for prompt_ids, _ in parts],
            max_new_tokens=max_new_tokens,
            eos_id=tokenizer.eos_id,
            pad_id=tokenizer.pad_id,
        )
        for (_, completion_ids), output in zip(parts, outputs, strict=True):
            hits += tokenizer.decode(output) == tokenizer.decode(completion_ids)
    return hits / len(examples)


class SampleError(BadInput):
    """A run that cannot be sampled as asked (no tokenizer, an empty prompt); one line."""


@dataclass(frozen=True)
class Completion:
    """What `sample_run` generated after a prompt, and from which checkpoint."""

    text: str
    """The new tokens decoded, EOS left out."""
    tokens: list[int]
    prompt_tokens: list[int]
    """The prompt as the model saw it: BOS (when the tokenizer adds it), then the prompt's tokens."""
    step: int
    """The checkpoint step whose parameters generated it."""


def sample_run(
    run_dir: Path,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    step: int | None = None,
    spec_dir: Path | None = None,
) -> Completion:
    """The completion of `prompt` by the model a run trained, as of checkpoint `step` (default:
    the newest that verifies), tokenised with the run's own tokenizer.

    The model is rebuilt exactly as export rebuilds it (`load_trained_model`): the
    run directory is only read. Raises a `BadInput` with a one-line reason.
    """
    from expspec.runtime.data.tokenizer import load_tokenizer
    from expspec.runtime.export.trained import DECODER_KINDS, load_trained_model, read_plan

    _check_settings(max_new_tokens, temperature)  # before the model is built, which takes a while
    kind = read_plan(Path(run_dir)).spec.model.kind
    if kind not in DECODER_KINDS:
        raise SampleError(
            f"{run_dir}: model.kind '{kind}' is not a language model that writes text; "
            f"exp sample takes {', '.join(repr(k) for k in DECODER_KINDS)}"
        )
    trained = load_trained_model(Path(run_dir), step, spec_dir=spec_dir)
    if trained.tokenizer_path is None:
        raise SampleError(
            f"{run_dir}: data.kind '{trained.plan.spec.data.kind}' has no tokenizer to read a prompt with"
        )
    tokenizer = load_tokenizer(trained.tokenizer_path)
    bos = tokenizer.bos_prefix
    prompt_tokens = bos + tokenizer.encode(prompt)
    if not prompt_tokens:
        raise SampleError("--prompt: empty, and the tokenizer adds no BOS to start from; give some text")
    eos = trained.config.eos_token_id if tokenizer.eos_id is None else tokenizer.eos_id
    (tokens,) = generate(
        trained.model,
        [prompt_tokens],
        max_new_tokens=max_new_tokens,
        eos_id=eos,
        pad_id=tokenizer.pad_id,
        temperature=temperature,
        seed=seed,
    )
    return Completion(tokenizer.decode(tokens), tokens, prompt_tokens, trained.step)


def sample(
    run_dir: Path,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    step: int | None = None,
) -> str:
    """The text a run's model writes after `prompt` (see `sample_run`)."""
    completion = sample_run(
        run_dir, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, step=step
    )
    return completion.text
