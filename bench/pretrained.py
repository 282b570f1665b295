"""Fine-tuning a pretrained folder against a hand-written loop, and the memory of loading one.

    python bench/pretrained.py --json out.json                          # about 8 minutes on 2 busy cores
    python bench/pretrained.py --first 10 --last 30 --load-mb 4 --repeats 1   # a smoke run

The bench writes its own Hugging Face folders (random weights from a fixed
seed, `config.json`, the shipped text tokenizer) into a scratch folder deleted
at the end, and gives every process its own `$EXPSPEC_CACHE_DIR` there.

- L1 steps/s of `exp run examples/sft_lora.toml` pointed at a folder of the
  example's shapes (LoRA and LoRA-only checkpoints every 100 steps as the
  example has them, no evaluation) against a hand-written loop on the same
  model, weights and batches: the folder loaded and LoRA added as a run does,
  base weights frozen, the same AdamW, one `jax.jit` step with donation over
  the adapters and their optimizer state, batches from the same source
  preloaded on the device. Each side is a fresh process, alternating; steps
  [0, first) are untimed, (first, last] timed; medians. Tokens/s is steps/s
  times batch_size x seq_len.
- L2 the same with `checkpoint.enabled = false`.
- L3 peak memory of loading: in a fresh process, VmHWM after `build_pretrained`
  minus VmHWM after importing JAX and the loader and starting the backend,
  against the bytes of the loaded parameters (the weights in the run's
  dtype). Float32 files into a float32 run, bfloat16 files into a bfloat16
  run, and float32 files into a bfloat16 run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    EXAMPLES,
    Row,
    at_least,
    at_most,
    median,
    rate_between,
    run_events,
    run_process,
    scratch,
    table,
    train_records,
    write_report,
)

from expspec.runtime.processes.child_command import exp_run_argv
from expspec.runtime.runs.records import read_jsonl
from expspec.runtime.runs.run_files import RunFiles

SFT = EXAMPLES / "sft_lora.toml"
TOKENIZER = EXAMPLES / "data" / "text_tokenizer"
EXAMPLE_SHAPES = {"hidden": 128, "intermediate": 344, "layers": 4, "heads": 4, "kv_heads": 2}
"""The shapes of `examples/pretrain_tiny_llama.toml`, whose export the example fine-tunes."""
PRELOADED = 200
"""Distinct batches the hand-written loop keeps on the device, cycled (as bench/handwritten.py)."""
STATUS_KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
SPEED_TARGET = 0.95
"""The pass mark of P1 (`exp run` against the hand-written loop), kept for the same comparison here."""
LOAD_TARGET = 1.5
"""Loading must stay under 1.5x the weights' size in the run's dtype."""


def decoder_config(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int) -> Any:
    """A Llama config over the shipped text tokenizer's vocabulary."""
    from expspec.compiler.decoder_config import DecoderConfig
    from expspec.runtime.data.tokenizer import load_tokenizer

    return DecoderConfig(
        family="llama",
        vocab_size=load_tokenizer(TOKENIZER).vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=256,
    )


def write_folder(folder: Path, config: Any, dtype: str, seed: int = 0) -> int:
    """A Hugging Face folder of `config` with random weights stored in `dtype`; its weights' bytes.

    Tensor names and shapes come from an abstract `DecoderLM` (no initialisation),
    values from numpy: normal(0, 0.02), norm scales 1.
    """
    import ml_dtypes
    from flax import nnx

    from expspec.runtime.models.decoder import DecoderLM
    from expspec.runtime.models.hf_weights import hf_name
    from expspec.runtime.models.safetensors_files import write_safetensors

    stored = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    model = nnx.eval_shape(lambda: DecoderLM(config, dtype="float32", param_dtype="float32", rngs=nnx.Rngs(0)))
    rng, tensors = np.random.default_rng(seed), {}
    for path, value in sorted(nnx.iter_graph(model), key=lambda item: tuple(map(str, item[0]))):
        if isinstance(value, nnx.Param):
            name, transposed = hf_name(tuple(str(p) for p in path))
            shape = tuple(value.shape)[::-1] if transposed else tuple(value.shape)
            if name.endswith("norm.weight"):
                tensors[name] = np.ones(shape, stored)
            else:
                tensors[name] = (rng.standard_normal(shape, np.float32) * 0.02).astype(stored)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", tensors)
    (folder / "config.json").write_text(json.dumps(config.to_hf(dtype), indent=2))
    for file in TOKENIZER.iterdir():
        shutil.copy(file, folder / file.name)
    return sum(t.nbytes for t in tensors.values())


def sft_overrides(folder: Path, last: int, log_every: int, *, checkpoints: bool) -> list[str]:
    """examples/sft_lora.toml on `folder`, `last` steps, no evaluation."""
    out = [
        f"model.path={json.dumps(str(folder))}",
        f"data.tokenizer={json.dumps(str(folder))}",
        f"train.steps={last}",
        "train.eval_every=0",
        "train.eval_generate=0",
        f"train.log_every={log_every}",
    ]
    return out if checkpoints else [*out, "checkpoint.enabled=false"]


def _status() -> dict[str, int]:
    """This process's resident memory by kind, in bytes, from /proc/self/status (Linux)."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in STATUS_KEYS:
                out[name] = int(value.split()[0]) * 1024
    return out


def loop_child(folder: Path, first: int, last: int) -> None:
    """In a fresh process: the hand-written LoRA loop; prints its steps/s over [first, last)."""
    from expspec.compiler import plan_spec
    from expspec.runtime.engine.environment import apply_determinism

    plan = plan_spec(SFT, sft_overrides(folder, last, 10, checkpoints=False))
    apply_determinism(plan.determinism)  # the same XLA thread pool as `exp run`

    import jax
    import optax
    from flax import nnx

    from expspec.runtime.data import build_data
    from expspec.runtime.engine.objectives import loss_and_metrics
    from expspec.runtime.engine.optim import build_optimizer
    from expspec.runtime.models import apply_lora, build_model

    s = plan.spec
    data = build_data(s.data, plan.seeds, SFT.parent)
    model = build_model(
        s.model,
        data.info,
        plan.seeds["init"],
        dtype=s.train.dtype,
        param_dtype=s.train.param_dtype,
        search=[SFT.parent],
    )
    model = apply_lora(model, s.model.lora, plan.seeds["lora"])
    graphdef, adapters, frozen = nnx.split(model, nnx.LoRAParam, ...)
    tx = build_optimizer(s.optimizer)
    task, root = data.info.task, jax.random.key(plan.seeds["dropout"])

    def train_step(adapters: Any, opt_state: Any, frozen: Any, batch: dict[str, Any], step: jax.Array):
        def loss_fn(a: Any):
            inputs = {k: batch[k] for k in ("segments", "positions") if k in batch}
            out = nnx.merge(graphdef, a, frozen)(batch["x"], train=True, key=jax.random.fold_in(root, step), **inputs)
            return loss_and_metrics(out, batch, task)[0]

        loss, grads = jax.value_and_grad(loss_fn)(adapters)
        updates, opt_state = tx.update(grads, opt_state, adapters)
        return optax.apply_updates(adapters, updates), opt_state, loss

    step_fn = jax.jit(train_step, donate_argnums=(0, 1))
    opt_state = tx.init(adapters)
    batches = [jax.device_put(data.train_batch(i)) for i in range(min(PRELOADED, last))]
    steps = [jax.device_put(jax.numpy.int32(i)) for i in range(len(batches))]
    n = len(batches)
    warm = jax.tree.map(lambda a: a.copy(), (adapters, opt_state))
    jax.block_until_ready(step_fn(*warm, frozen, batches[0], steps[0]))  # compile outside the window

    def train(begin: int, end: int) -> float:
        nonlocal adapters, opt_state
        start = time.perf_counter()
        for i in range(begin, end):
            adapters, opt_state, _ = step_fn(adapters, opt_state, frozen, batches[i % n], steps[i % n])
        jax.block_until_ready((adapters, opt_state))
        return time.perf_counter() - start

    train(0, first)
    seconds = train(first, last)
    leaves = jax.tree_util.tree_leaves_with_path(adapters.to_pure_dict())
    names = sorted("/".join(str(getattr(k, "key", k)) for k in path) for path, _ in leaves)
    size = sum(int(a.size) for _, a in leaves)
    report = {"steps_per_s": (last - first) / seconds, "trained": names, "trained_params": size}
    print(json.dumps({**report, "batch_size": s.data.batch_size, "seq_len": s.data.seq_len}))


def load_child(folder: Path, dtype: str) -> None:
    """In a fresh process: VmHWM before and after `build_pretrained(folder)` in a `dtype` run."""
    began = time.perf_counter()
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from expspec.runtime.models.common import BuildContext, parse_dtype
    from expspec.runtime.models.pretrained import build_pretrained
    from expspec.runtime.types import DataInfo
    from expspec.spec.model import Pretrained

    jax.block_until_ready(jnp.zeros(8) + 1)  # the backend started: a fixed cost of every run
    before = _status()
    spec = Pretrained(kind="pretrained", path=str(folder))
    ctx = BuildContext(init_seed=0, dtype=parse_dtype(dtype), param_dtype=parse_dtype(dtype), search=(folder,))
    start = time.perf_counter()
    model = build_pretrained(spec, DataInfo(task="lm", vocab_size=None), ctx)
    params = jax.block_until_ready(jax.tree.leaves(nnx.state(model, nnx.Param)))
    loaded = time.perf_counter() - start
    after = _status()
    dtypes = sorted({str(p.dtype) for p in params})
    report = {
        "before": before,
        "after": after,
        "param_bytes": int(sum(p.nbytes for p in params)),
        "param_dtypes": dtypes,
        "load_s": loaded,
        "imports_s": start - began,
    }
    print(json.dumps(report))


def _child(*args: str, env: dict[str, str]) -> dict[str, Any]:
    proc = run_process([sys.executable, __file__, *args], env=env, timeout=1800)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hand_round(folder: Path, env: dict[str, str], first: int, last: int) -> dict[str, Any]:
    """One hand-written loop process on `folder`: its steps/s over [first, last) and the leaves it trains."""
    return _child("--loop", str(folder), "--first", str(first), "--last", str(last), env=env)


def exp_round(
    folder: Path, run_dir: Path, env: dict[str, str], first: int, last: int, trained: list[str], *, checkpoints: bool
) -> tuple[float, int]:
    """One `exp run` of the example on `folder`: steps/s over (first, last] and the saves that fall in it.

    Refuses a run that trains other leaves than `trained` (the hand-written loop's)."""
    log_every = math.gcd(first, last, 10)  # a metrics record at both ends of the window
    overrides = sft_overrides(folder, last, log_every, checkpoints=checkpoints)
    run_process(exp_run_argv(SFT, overrides, run_dir, quiet=True), env=env, timeout=1800)
    rate = rate_between(train_records(run_dir), first, last)
    ledger = read_jsonl(RunFiles(run_dir).ledger)
    if next(r for r in ledger if r["kind"] == "leaves")["params"] != trained:
        raise RuntimeError(f"{run_dir}: exp run trains other leaves than the hand-written loop")
    # a save after step s delays step s + 1: those after steps [first, last) fall in the window
    saves = sum(e["event"] == "checkpoint_save" and first <= e["step"] < last for e in run_events(run_dir))
    return rate, saves


def speed_row(
    row_id: str, measure: str, exp: list[float], hand: list[float], saves: list[int], out: dict[str, Any], window: str
) -> Row:
    """`exp run` steps/s against the hand-written loop's (medians), with tokens/s in the notes."""
    tokens = out["batch_size"] * out["seq_len"]
    e, h = median(exp), median(hand)
    target, met = at_least(e / h, SPEED_TARGET)
    notes = {
        "window": window,
        "repeats": len(hand),
        "tokens_per_step": tokens,
        "tokens_per_s": e * tokens,
        "baseline_tokens_per_s": h * tokens,
        "exp_steps_per_s": exp,
        "handwritten_steps_per_s": hand,
        "checkpoint_saves_in_window": saves,
        "trained_params": out["trained_params"],
        "trained_leaves": len(out["trained"]),
        "shapes": {**EXAMPLE_SHAPES, "batch_size": out["batch_size"], "seq_len": out["seq_len"]},
    }
    return Row(row_id, measure, e, h, "steps/s", e / h, target, met, notes)


def example_folder(work: Path) -> Path:
    """A float32 folder of the example's shapes (fixed random weights) under `work`."""
    folder = work / "tiny-llama-hf"
    write_folder(folder, decoder_config(**EXAMPLE_SHAPES), "float32")
    return folder


def measure_training(work: Path, env: dict[str, str], first: int, last: int, repeats: int) -> list[Row]:
    """L1 and L2: `exp run` with and without checkpoints against the hand-written loop, alternating."""
    folder = example_folder(work)
    hand = []
    rates: dict[bool, list[float]] = {True: [], False: []}
    saves: dict[bool, list[int]] = {True: [], False: []}
    for i in range(repeats):
        out = hand_round(folder, env, first, last)
        hand.append(out["steps_per_s"])
        for checkpoints in (True, False):
            run_dir = work / f"run-{i}-{'saved' if checkpoints else 'unsaved'}"
            rate, saved = exp_round(folder, run_dir, env, first, last, out["trained"], checkpoints=checkpoints)
            rates[checkpoints].append(rate)
            saves[checkpoints].append(saved)
    rows = []
    for row_id, checkpoints in (("L1", True), ("L2", False)):
        what = "checkpoints as the example" if checkpoints else "no checkpoints"
        measure = f"exp run steps/s, sft_lora, {what}"
        rows.append(speed_row(row_id, measure, rates[checkpoints], hand, saves[checkpoints], out, f"({first}, {last}]"))
    return rows


def load_shapes(load_mb: float) -> dict[str, int]:
    """Layer count of a 1024-wide Llama (8 heads, 4 key/value heads) whose float32 weights are about
    `load_mb` MiB; below one layer's size, a narrower model."""
    hidden, intermediate = (1024, 2752) if load_mb >= 64 else (256, 688)
    per_layer = 4 * (2 * hidden * hidden + 2 * hidden * hidden // 2 + 3 * hidden * intermediate)
    return {
        "hidden": hidden,
        "intermediate": intermediate,
        "layers": max(1, round(load_mb * 2**20 / per_layer)),
        "heads": 8,
        "kv_heads": 4,
    }


def measure_loading(work: Path, env: dict[str, str], load_mb: float, repeats: int) -> list[Row]:
    """L3: a fresh process per load, alternating the cases; medians of the growth of VmHWM."""
    shapes = load_shapes(load_mb)
    config = decoder_config(**shapes)
    files = {}
    for dtype in ("float32", "bfloat16"):
        files[dtype] = write_folder(work / f"load-{dtype}", config, dtype, seed=1)
    cases = [("float32", "float32"), ("bfloat16", "bfloat16"), ("float32", "bfloat16")]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(repeats):
        for stored, run in cases:
            runs[stored, run].append(_child("--load", str(work / f"load-{stored}"), "--dtype", run, env=env))
    rows = []
    for stored, run in cases:
        reports = runs[stored, run]
        growth = median([r["after"]["VmHWM"] - r["before"]["VmHWM"] for r in reports])
        weights = reports[0]["param_bytes"]
        target, met = at_most(growth / weights, LOAD_TARGET)
        notes = {
            "shapes": shapes,
            "file_bytes": files[stored],
            "repeats": repeats,
            "reports": reports,
        }
        measure = f"peak memory of loading, {stored} files, {run} run"
        rows.append(Row("L3", measure, growth, weights, "bytes", growth / weights, target, met, notes))
    return rows


def _tokens(row: Row) -> str | None:
    n = row.notes
    return f"tokens/s {n['tokens_per_s']:.0f} against {n['baseline_tokens_per_s']:.0f}" if "tokens_per_s" in n else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=20, help="untimed steps before the window (default 20)")
    parser.add_argument("--last", type=int, default=220, help="the window's last step (default 220)")
    parser.add_argument("--load-mb", type=float, default=160, help="float32 MiB of the loaded model (default 160)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per side (default 3)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--loop", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        return loop_child(args.loop, args.first, args.last)
    if args.load:
        return load_child(args.load, args.dtype)
    if not 0 < args.first < args.last or args.repeats < 1 or args.load_mb <= 0:
        parser.error("need 0 < --first < --last, --repeats at least 1 and a positive --load-mb")
    start = time.perf_counter()
    with scratch("pretrained") as work:
        env = {**os.environ, "EXPSPEC_CACHE_DIR": str(work / "exp-cache")}
        rows = measure_training(work, env, args.first, args.last, args.repeats)
        print("[L1, L2 measured]", file=sys.stderr, flush=True)
        rows += measure_loading(work, env, args.load_mb, args.repeats)
    total = time.perf_counter() - start
    print(table(rows, _tokens))
    print(f"\n{len(rows)} figures in {total:.0f} s")
    if args.json:
        write_report(args.json, "bench/pretrained.py", rows, total)


if __name__ == "__main__":
    main()
