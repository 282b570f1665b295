"""The reference trainer's side of P15 and P16: Tunix's `PeftTrainer` on the work `exp run` does.

Runs under a Python that has `google-tunix` installed next to expspec (a
bench-only environment; Tunix is never a dependency of the package):

    python -m venv tunix-venv
    tunix-venv/bin/pip install -c examples/ci/exp.constraints.txt -e . google-tunix==0.1.7
    tunix-venv/bin/python bench/tunix_trainer.py mlp --steps 1100 --first 100 --last 1100 --checkpoints DIR
    tunix-venv/bin/python bench/tunix_trainer.py lm --folder HF --steps 220 --first 20 --last 220 --checkpoints DIR

Everything a run computes with comes from the expspec plan, as in
bench/handwritten.py: the determinism settings (applied before JAX starts),
the model and its initial parameters (LoRA adapters too), the Optax transform
with its schedule, the batch of every step from the run's data source, and the
dropout key of step s, `fold_in(key(seeds.dropout), s)`. The trainer is used
as its documentation shows: `PeftTrainer(model, optimizer, TrainingConfig)`,
`with_loss_fn`, `train(iterator)`, checkpoints through its own
`checkpoint_root_directory` and `checkpointing_options` (Orbax, every
`--every` steps, the last 3 kept, asynchronous as Orbax's default), and its
default `max_steps`-driven loop, whose progress bar object exists whether or
not a terminal shows it. `--no-bar` runs the same steps as a finite iterator
without `max_steps`, the one documented way to train without that object.

A training hook stamps `time.time()` at the end of each step (Tunix calls it
once the step's loss is on the host, so the step has finished). Prints one
JSON line: the steps trained, the step it restored from, the stamped times,
steps/s over (first, last], tokens per step for the language model, and with
`--hash-params` the full hash and per-leaf hashes of the trained parameters as
a pure dict with expspec's paths (`expspec.runtime.engine.hashing`).
`--exit-after-first` prints and leaves right after the first step of this
process, for the time from process start to the first (resumed) step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import DIGITS  # noqa: E402

KEEP = 3
"""Checkpoints kept, as `checkpoint.keep_last` in examples/base.toml."""


def _plan(workload: str, steps: int, folder: Path | None) -> tuple[Any, Path]:
    from expspec.compiler import plan_spec

    if workload == "mlp":
        return plan_spec(DIGITS, [f"train.steps={steps}", "train.eval_every=0"]), DIGITS
    from pretrained import SFT, sft_overrides

    return plan_spec(SFT, sft_overrides(folder, steps, 10, checkpoints=True)), SFT


def _model(plan: Any, spec: Path, data: Any) -> Any:
    from expspec.runtime.models import apply_lora, build_model

    s = plan.spec
    dtypes = {"dtype": s.train.dtype, "param_dtype": s.train.param_dtype}
    model = build_model(s.model, data.info, plan.seeds["init"], **dtypes, search=[spec.parent])
    return apply_lora(model, s.model.lora, plan.seeds["lora"]) if s.model.lora is not None else model


class StepClock:
    """Tunix's `TrainingHooks`: the wall time at which each wanted step ended, and the first step of this process."""

    def __init__(self, wanted: set[int], exit_after_first: bool, report: Any) -> None:
        self.wanted, self.exit_after_first, self.report = wanted, exit_after_first, report
        self.times: dict[int, float] = {}
        self.first: tuple[int, float] | None = None

    def on_train_step_end(self, trainer: Any, train_step: int, train_loss: Any) -> None:
        now = time.time()
        if self.first is None:
            self.first = (train_step, now)
            if self.exit_after_first:
                print(json.dumps(self.report(trainer)), flush=True)
                os._exit(0)  # as a killed run: no final checkpoint, no waiting for saves in flight
        if train_step in self.wanted:
            self.times[train_step] = now

    def on_train_start(self, trainer: Any) -> None: ...
    def on_train_end(self, trainer: Any) -> None: ...
    def on_train_step_start(self, trainer: Any) -> None: ...
    def on_eval_step_start(self, trainer: Any) -> None: ...
    def on_eval_step_end(self, trainer: Any, eval_loss: Any) -> None: ...


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Build everything from the plan, train under `PeftTrainer`, return the report."""
    plan, spec = _plan(args.workload, args.plan_steps or args.steps, args.folder)
    from expspec.runtime.engine.environment import apply_determinism

    apply_determinism(plan.determinism)  # before Tunix imports JAX: the same XLA thread pool as `exp run`

    import jax
    import numpy as np
    import orbax.checkpoint as ocp
    from flax import nnx
    from tunix.sft import peft_trainer

    from expspec.runtime.data import build_data
    from expspec.runtime.engine.hashing import full_hash, leaf_hashes
    from expspec.runtime.engine.objectives import loss_and_metrics
    from expspec.runtime.engine.optim import build_optimizer

    s = plan.spec
    data = build_data(s.data, plan.seeds, spec.parent)
    model = _model(plan, spec, data)
    task, root = data.info.task, jax.random.key(plan.seeds["dropout"])
    trained = nnx.LoRAParam if s.model.lora is not None else nnx.Param

    # Named parameters, not **kwargs: Tunix's `nnx.value_and_grad` binds the batch's entries to positions.
    def loss_fn(
        model: nnx.Module, x: Any, y: Any, step: Any, weight: Any = None, segments: Any = None, positions: Any = None
    ) -> Any:
        inputs = {k: v for k, v in (("segments", segments), ("positions", positions)) if v is not None}
        out = model(x, train=True, key=jax.random.fold_in(root, step), **inputs)
        batch = {"y": y} if weight is None else {"y": y, "weight": weight}
        return loss_and_metrics(out, batch, task)[0]

    def batches() -> Iterator[dict[str, Any]]:
        # What a user hands the trainer: the run's batch of each step, in order, from the start
        # (on resume Tunix reads and discards the steps it has trained).
        for i in range(args.steps):
            yield {**data.train_batch(i), "step": np.int32(i)}

    options = ocp.CheckpointManagerOptions(save_interval_steps=args.every, max_to_keep=KEEP)
    config = peft_trainer.TrainingConfig(
        eval_every_n_steps=10**9,
        max_steps=None if args.no_bar else args.steps,
        checkpoint_root_directory=str(args.checkpoints.resolve()),
        checkpointing_options=options,
    )
    trainer = peft_trainer.PeftTrainer(model, build_optimizer(s.optimizer), config).with_loss_fn(loss_fn)
    restored = trainer.train_steps
    tokens = s.data.batch_size * s.data.seq_len if task == "lm" else None

    def report(trainer: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workload": args.workload,
            "bar": not args.no_bar,
            "restored_step": restored,
            "steps": trainer.train_steps,
            "first_step": clock.first[0] if clock.first else None,
            "first_step_time": clock.first[1] if clock.first else None,
            "times": {str(k): v for k, v in sorted(clock.times.items())},
            "tokens_per_step": tokens,
        }
        if args.first is not None and {args.first, args.last} <= clock.times.keys():
            out["steps_per_s"] = (args.last - args.first) / (clock.times[args.last] - clock.times[args.first])
            if tokens:
                out["tokens_per_s"] = out["steps_per_s"] * tokens
        if args.hash_params:
            params = jax.device_get(nnx.state(trainer.model, trained).to_pure_dict())
            out["params_full_hash"] = full_hash(params)
            out["params_leaf_hashes"] = leaf_hashes(params)
        return out

    wanted = {args.first, args.last} - {None}
    clock = StepClock(wanted, args.exit_after_first, report)
    trainer.with_training_hooks(clock)
    trainer.train(batches())  # closes the trainer: the last checkpoint saved, saves in flight finished
    out = report(trainer)
    out["checkpoints"] = sorted(int(p.name) for p in args.checkpoints.iterdir() if p.name.isdigit())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["mlp", "lm"], help="the digits MLP or the LoRA example")
    parser.add_argument("--folder", type=Path, help="lm: the Hugging Face folder the LoRA example fine-tunes")
    parser.add_argument("--steps", type=int, required=True, help="steps to train (max_steps)")
    parser.add_argument("--plan-steps", type=int, help="train.steps of the plan (its schedule), default --steps")
    parser.add_argument("--first", type=int, help="the window's first step (rate over (first, last])")
    parser.add_argument("--last", type=int)
    parser.add_argument("--checkpoints", type=Path, required=True, help="Tunix's checkpoint_root_directory")
    parser.add_argument("--every", type=int, default=100, help="save_interval_steps (default 100)")
    parser.add_argument("--no-bar", action="store_true", help="no max_steps: no progress bar object")
    parser.add_argument("--hash-params", action="store_true", help="report hashes of the trained parameters")
    parser.add_argument("--exit-after-first", action="store_true", help="report and exit after the first step")
    args = parser.parse_args()
    if args.workload == "lm" and args.folder is None:
        parser.error("lm needs --folder")
    if (args.first is None) != (args.last is None) or (args.first is not None and not 0 < args.first < args.last):
        parser.error("give both --first and --last, 0 < first < last")
    print(json.dumps(train(args)), flush=True)


if __name__ == "__main__":
    main()
