"""The baseline every runtime benchmark is measured against: a minimal hand-written loop.

What a JAX user would write without a framework: the same Flax model split once
into graph and state (`nnx.split`), one pure `jax.jit` step over the state
pytree with donation, the same Optax optimizer and loss, the batches already on
the device, no per-step host sync, no checkpoints, no ledger. Only the model,
optimizer and batches are taken from the plan, so both sides train the same
thing; the step and the loop are written here, independently of the runtime.

Run as a script, in a fresh process like `exp run`, it compiles, runs steps
[0, first) untimed, then times steps [first, last) twice: without a host sync
and with `float(loss)` every step. It prints one JSON line:

    python bench/handwritten.py SPEC --first 200 --last 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any


class HandwrittenLoop:
    """Model, optimizer, batches and a compiled step; `train` runs the loop."""

    PRELOADED = 200
    """Distinct batches kept on the device, cycled: enough to defeat caching of a
    single batch, few enough that they do not inflate the baseline's memory."""

    def __init__(self, spec: Path, overrides: tuple[str, ...] = ()) -> None:
        from expspec.compiler import plan_spec
        from expspec.runtime.engine.environment import apply_determinism

        plan = plan_spec(spec, overrides)
        apply_determinism(plan.determinism)  # the same XLA thread pool as `exp run`

        import jax
        import optax
        from flax import nnx

        from expspec.runtime.data import build_data
        from expspec.runtime.engine.objectives import loss_and_metrics
        from expspec.runtime.engine.optim import build_optimizer
        from expspec.runtime.models import build_model

        s = plan.spec
        data = build_data(s.data, plan.seeds, spec.parent)
        model = build_model(
            s.model, data.info, plan.seeds["init"], dtype=s.train.dtype, param_dtype=s.train.param_dtype
        )
        graphdef, params = nnx.split(model)
        tx = build_optimizer(s.optimizer)
        task, root = data.info.task, jax.random.key(plan.seeds["dropout"])

        def train_step(params: Any, opt_state: Any, batch: dict[str, Any], step: jax.Array):
            def loss_fn(p: Any):
                out = nnx.merge(graphdef, p)(batch["x"], train=True, key=jax.random.fold_in(root, step))
                return loss_and_metrics(out, batch, task)[0]

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self.step_fn = jax.jit(train_step, donate_argnums=(0, 1))
        self.params, self.opt_state = params, tx.init(params)
        self.batches = [jax.device_put(data.train_batch(i)) for i in range(self.PRELOADED)]
        self.steps = [jax.device_put(jax.numpy.int32(i)) for i in range(self.PRELOADED)]
        self.jax = jax

    def warm_up(self) -> None:
        """Compile (and run one step) outside the timed part; the state is rebuilt after."""
        p = self.jax.tree.map(lambda a: a.copy(), self.params)
        o = self.jax.tree.map(lambda a: a.copy(), self.opt_state)
        self.jax.block_until_ready(self.step_fn(p, o, self.batches[0], self.steps[0]))

    def train(self, first: int, last: int, *, sync_every_step: bool = False) -> float:
        """Run steps [first, last); return the wall time, blocking once at the end."""
        params, opt_state, step_fn, batches, steps = self.params, self.opt_state, self.step_fn, self.batches, self.steps
        n = len(batches)
        start = time.perf_counter()
        for i in range(first, last):
            params, opt_state, loss = step_fn(params, opt_state, batches[i % n], steps[i % n])
            if sync_every_step:
                float(loss)  # what a naive loop does to print or log the loss
        self.jax.block_until_ready((params, opt_state))
        elapsed = time.perf_counter() - start
        self.params, self.opt_state = params, opt_state
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--last", type=int, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    loop = HandwrittenLoop(args.spec, tuple(args.set))
    loop.warm_up()
    loop.train(0, args.first)
    timed = args.last - args.first
    free = timed / loop.train(args.first, args.last)
    synced = timed / loop.train(args.last, args.last + timed, sync_every_step=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"steps_per_s": free, "sync_steps_per_s": synced, "peak_rss_bytes": peak}))


if __name__ == "__main__":
    main()
