"""From a plan to live components: data, model, optimizer and the initial train state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from expspec.compiler import Plan
from expspec.compiler.mesh import check_batch
from expspec.runtime.data import DataSource, build_data
from expspec.runtime.engine.hashing import full_hash
from expspec.runtime.engine.layout import Layout, make_layout
from expspec.runtime.engine.lora_base import BaseWeights, read_base
from expspec.runtime.engine.optim import build_optimizer, build_schedule
from expspec.runtime.engine.restored_tree import fit_restored
from expspec.runtime.engine.step import ModelParts, Steps, make_steps
from expspec.runtime.models import ModelError, apply_lora, build_model, trainable_filter
from expspec.runtime.processes.cluster import Cluster
from expspec.runtime.runs.rundir import RunRefused
from expspec.runtime.types import PyTree
from expspec.spec import Experiment

__all__ = ["Components", "build_components", "saved_part"]


@dataclass
class Components:
    """Everything a run computes with, built once per process."""

    data: DataSource
    parts: ModelParts
    tx: optax.GradientTransformation
    steps: Steps
    state: PyTree
    """The initial train state: {"params", "frozen", "opt", "step"}, laid out on the mesh."""
    layout: Layout
    base_weights: str | None
    """Full hash of LoRA base weights loaded from `lora.init_from`, if any."""
    base_checkpoint: dict[str, Any] | None = None
    """The base checkpoint they came from ({"run", "step", "full_hash"}), recorded so
    that every later attempt re-reads that same step."""

    def place_batch(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """A host batch as the steps take it (see `Layout.place_batch`)."""
        return self.layout.place_batch(batch)


def saved_part(state: PyTree, save: str) -> PyTree:
    """What a checkpoint holds: everything, or (LoRA) all but the frozen base weights,
    which are loaded again from the recorded base checkpoint on restore."""
    if save == "lora":
        return {key: value for key, value in state.items() if key != "frozen"}
    return state


def _load_base_weights(model: nnx.Module, base: BaseWeights) -> str:
    """Put verified base parameters into `model`; return their full hash (as the model holds them)."""
    state = nnx.state(model, nnx.Param)
    pure = fit_restored(state.to_pure_dict(), base.params, ModelError, "base checkpoint")
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    digest = full_hash(pure)
    if base.expected_weights is not None and digest != base.expected_weights:
        raise RunRefused(
            f"lora.init_from: base run {base.checkpoint.run} step {base.checkpoint.step} holds weights of hash "
            f"{digest[:12]}, this run started from {base.expected_weights[:12]}; use another --run-dir"
        )
    return digest


def _check_generation(spec: Experiment, data: DataSource, model: nnx.Module) -> None:
    """`train.eval_generate` completes held-out prompts: it needs prompt/completion text and a
    model that decodes with a cache."""
    if not spec.train.eval_generate:
        return
    if not hasattr(model, "decode") or not getattr(data, "eval_pairs", None) or not data.eval_pairs(1):
        raise ModelError(
            "train.eval_generate: needs a decoder model (kind pretrained, llama, qwen2, qwen3) and "
            "prompt/completion text data (data.prompt_field, data.completion_field); set 0"
        )


def build_components(
    plan: Plan,
    spec_dir: Path,
    allow_imports: Sequence[str] = (),
    cluster: Cluster | None = None,
    base: BaseWeights | None = None,
    *,
    rehash_data: bool = False,
) -> Components:
    """Build data, model, optimizer and steps for `plan`; relative paths resolve against `spec_dir`.

    `base`: the LoRA base weights already pinned and verified (`lora_base.pin_base`);
    without it a plan with `lora.init_from` reads the base's newest checkpoint."""
    spec = plan.spec
    layout = make_layout(plan.mesh, cluster or Cluster(0, 1))  # refuses a mesh that does not fit, first
    check_batch(spec.data.batch_size, layout.sizes)
    data = build_data(spec.data, plan.seeds, spec_dir, allow_imports, rehash=rehash_data)
    model = build_model(
        spec.model,
        data.info,
        plan.seeds["init"],
        dtype=spec.train.dtype,
        param_dtype=spec.train.param_dtype,
        allow_imports=allow_imports,
        search=[spec_dir],
    )
    base_weights = base_checkpoint = None
    lora = spec.model.lora
    if lora is not None:
        if lora.init_from:
            base = base or read_base(spec_dir / lora.init_from)
            base_weights = _load_base_weights(model, base)
            base_checkpoint = base.checkpoint.record()
        model = apply_lora(model, lora, plan.seeds["lora"])
    _check_generation(spec, data, model)
    graphdef, params, frozen = nnx.split(model, trainable_filter(spec.model), ...)
    parts = ModelParts(graphdef=graphdef, params=params, frozen=frozen)

    tx = build_optimizer(spec.optimizer)
    schedule = build_schedule(spec.optimizer.schedule, spec.optimizer.learning_rate)
    params_pure = params.to_pure_dict()
    state = {
        "params": params_pure,
        "frozen": frozen.to_pure_dict(),
        "opt": tx.init(params_pure),
        "step": jnp.zeros((), jnp.int32),
    }
    shardings = layout.state_shardings(state)
    state = layout.place(state, shardings)
    steps = make_steps(
        parts,
        tx=tx,
        schedule=schedule,
        task=data.info.task,
        dropout_seed=plan.seeds["dropout"],
        grad_accum=spec.train.grad_accum,
        state_shardings=shardings,
        replicated=layout.replicated,
    )
    return Components(
        data=data,
        parts=parts,
        tx=tx,
        steps=steps,
        state=state,
        layout=layout,
        base_weights=base_weights,
        base_checkpoint=base_checkpoint,
    )
