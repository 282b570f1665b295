"""A run's trained model, rebuilt from its plan and one verified checkpoint.

Export and generation look at what a run learned, so they must rebuild exactly
the model it trained: the same builder, base weights and adapters (the plan's
`init` and `lora` seed streams), with the checkpoint's parameters put in. The
checkpoint is read through the one verified read path (`checkpoint_reads`), the
inputs the run depended on (tokenizer, a pretrained folder) must still be the
bytes it trained on, and a LoRA-only checkpoint's base weights must hash to the
hash the run recorded. Nothing in the run directory is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flax import nnx

from expspec.compiler import Plan
from expspec.compiler.decoder_config import ConfigError, DecoderConfig, read_hf_config
from expspec.errors import BadInput
from expspec.runtime.engine.checkpoint_reads import CheckpointDamaged, committed_steps, read_verified
from expspec.runtime.engine.restored_tree import fit_restored
from expspec.runtime.runs.rundir import RunDir
from expspec.spec import SpecError

__all__ = ["DECODER_KINDS", "ExportError", "TrainedModel", "load_trained_model", "spec_folder"]

DECODER_KINDS = ("pretrained", "llama", "qwen2", "qwen3")
"""`model.kind`s whose runs export to Hugging Face folders and generate text."""


class ExportError(BadInput):
    """A run (or step, or output folder) that cannot be exported as asked; one line."""


@dataclass(frozen=True)
class TrainedModel:
    """The model a run trained, as of one checkpoint."""

    model: nnx.Module
    """Built as the run builds it; LoRA layers stay `LoRALinear`s with their trained adapters."""
    config: DecoderConfig
    """Its architecture: the pretrained folder's `config.json`, or the spec's fields."""
    plan: Plan
    step: int
    run_dir: Path
    spec_dir: Path
    """The folder the plan's relative paths (tokenizer, pretrained folder) resolve against."""
    skipped: dict[int, str] = field(default_factory=dict)
    """Newer checkpoints passed over because they failed verification: step -> reason."""

    def resolve(self, path: str) -> Path:
        """A path as the plan names it, resolved as the run resolved it."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.spec_dir / candidate

    @property
    def tokenizer_path(self) -> Path | None:
        """What the run's `data.tokenizer` names, resolved; None for data without one."""
        tokenizer = getattr(self.plan.spec.data, "tokenizer", None)
        return self.resolve(tokenizer) if tokenizer else None


def read_plan(run_dir: Path) -> Plan:
    """The plan a run directory was started with."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: no such run directory")
    plan = RunDir(run_dir).recorded_plan()
    if plan is None:
        raise ExportError(f"{run_dir}: no plan.json; is this a run directory?")
    return plan


def spec_folder(plan: Plan, run_dir: Path, spec_dir: Path | None = None) -> Path:
    """Where the run's relative paths resolve: `spec_dir` when given, else the folder of the
    spec file the plan names (as `exp run` was given it, so relative to the current folder)."""
    if spec_dir is not None:
        return Path(spec_dir).resolve()
    if not plan.source.file:
        raise ExportError(f"{RunDir(run_dir).plan}: names no spec file; pass the spec's folder with --spec-dir")
    return Path(plan.source.file).resolve().parent


def check_decoder(plan: Plan, run_dir: Path) -> None:
    """Refuse a run whose model is not a decoder language model."""
    kind = plan.spec.model.kind
    if kind not in DECODER_KINDS:
        raise ExportError(
            f"{RunDir(run_dir).plan}: model.kind: '{kind}' runs cannot be exported; "
            f"export takes {', '.join(repr(k) for k in DECODER_KINDS)}"
        )


def check_inputs(plan: Plan, spec_dir: Path) -> None:
    """The input files the run depended on (tokenizer, pretrained config and weights) must be
    the bytes it trained on: an export pairs the run's weights with them."""
    from expspec.compiler.input_files import hash_input_files

    try:
        now = hash_input_files(plan.spec, spec_dir, plan.source.file)
    except SpecError as err:
        problem = err.problems[0]
        raise ExportError(
            f"{problem.path + ': ' if problem.path else ''}{problem.message} "
            f"(the run's paths resolve against {spec_dir}; --spec-dir names another folder)"
        ) from None
    recorded = plan.fingerprints.files
    for key in sorted(recorded.keys() | now.keys()):
        if now.get(key) != recorded.get(key):
            current, before = (now.get(key) or "nothing")[:12], (recorded.get(key) or "nothing")[:12]
            raise ExportError(
                f"{key}: the files under {spec_dir} hash to {current}, the run trained on {before}; "
                "export needs the inputs the run used (--spec-dir names where they are)"
            )


def choose_step(checkpoints: Path, step: int | None) -> tuple[int, dict[str, Any], dict[int, str]]:
    """The checkpoint to read: `step`, or the newest that verifies. Returns its step, its
    verified state and the newer steps passed over (step -> why)."""
    steps = committed_steps(checkpoints)
    if not steps:
        raise ExportError(f"{checkpoints}: no committed checkpoint to export")
    if step is not None and step not in steps:
        raise ExportError(f"--step {step}: no checkpoint at that step in {checkpoints} (it has {_listed(steps)})")
    skipped: dict[int, str] = {}
    for candidate in [step] if step is not None else sorted(steps, reverse=True):
        try:
            state, meta = read_verified(checkpoints, candidate)
        except CheckpointDamaged as err:
            if step is not None:
                raise ExportError(f"{checkpoints}/{candidate}: {err}") from None
            skipped[candidate] = err.reason
            continue
        return candidate, {"state": state, "meta": meta}, skipped
    raise ExportError(f"{checkpoints}: no checkpoint verifies (newest: step {steps[-1]}: {skipped[steps[-1]]})")


def _listed(steps: list[int]) -> str:
    shown = ", ".join(str(s) for s in steps[-8:])
    return f"steps {'..., ' if len(steps) > 8 else ''}{shown}"


def _put(model: nnx.Module, what: Any, saved: Any, where: str) -> None:
    """Replace the variables of `model` that `what` selects with `saved`."""
    state = nnx.state(model, what)
    pure = fit_restored(nnx.to_pure_dict(state), saved, ExportError, "checkpoint", where)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


def _build(plan: Plan, spec_dir: Path, run_dir: Path, checkpoint: dict[str, Any]) -> nnx.Module:
    """The run's model with the checkpoint's parameters, built along the run's own path."""
    from expspec.runtime.data import build_data
    from expspec.runtime.engine.hashing import full_hash
    from expspec.runtime.engine.lora_base import pin_base
    from expspec.runtime.models import apply_lora, build_model, trainable_filter

    spec = plan.spec
    info = build_data(spec.data, plan.seeds, spec_dir).info
    model = build_model(
        spec.model,
        info,
        plan.seeds["init"],
        dtype=spec.train.dtype,
        param_dtype=spec.train.param_dtype,
        search=[spec_dir],
    )
    state, meta = checkpoint["state"], checkpoint["meta"]
    lora = spec.model.lora
    if lora is not None and "frozen" not in state:
        # A LoRA-only checkpoint: the base is what the run started from, re-derived and proven.
        base = pin_base(plan, RunDir(run_dir), spec_dir)
        if base is not None:
            _put(model, nnx.Param, base.params, "")
        recorded = meta.get("base_weights")
        if isinstance(recorded, str):
            digest = full_hash(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
            if digest != recorded:
                raise ExportError(
                    f"{run_dir}: the base weights rebuilt now hash to {digest[:12]}, the run trained on "
                    f"{recorded[:12]}; its LoRA-only checkpoints cannot be exported without them"
                )
    if lora is not None:
        model = apply_lora(model, lora, plan.seeds["lora"])
    trainable = trainable_filter(spec.model)
    _put(model, trainable, state["params"], "params/")
    if "frozen" in state:
        _put(model, nnx.Not(trainable), state["frozen"], "frozen/")
    return model


def _config(plan: Plan, spec_dir: Path, model: nnx.Module) -> DecoderConfig:
    """The decoder's architecture as the build derived it (vocabulary: the embedding's rows)."""
    from expspec.runtime.models.pretrained import model_folder

    spec = plan.spec.model
    if spec.kind == "pretrained":
        try:
            return read_hf_config(model_folder(spec, spec_dir))
        except ConfigError as err:
            raise ExportError(f"model.path: {err}") from None
    return DecoderConfig.from_spec(spec, int(model.model.embed_tokens.num_embeddings))


def load_trained_model(run_dir: Path, step: int | None = None, *, spec_dir: Path | None = None) -> TrainedModel:
    """The decoder a run trained, with the parameters of checkpoint `step` (default: the newest
    that verifies). Raises `ExportError` (or another `BadInput`) with a one-line reason."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    check_decoder(plan, run_dir)
    folder = spec_folder(plan, run_dir, spec_dir)
    check_inputs(plan, folder)
    rundir = RunDir(run_dir)
    checkpoints = rundir.checkpoints(plan, folder)
    chosen, checkpoint, skipped = choose_step(checkpoints, step)
    meta = checkpoint["meta"]
    equivalent = rundir.check_continuable(plan)
    trajectory = meta.get("trajectory")
    if equivalent is not None and isinstance(trajectory, str) and trajectory not in equivalent.equivalent:
        raise ExportError(
            f"{checkpoints}/{chosen}: saved by trajectory {trajectory[:12]}, not this run's "
            f"({plan.fingerprints.trajectory[:12]})"
        )
    model = _build(plan, folder, run_dir, checkpoint)
    config = _config(plan, folder, model)
    return TrainedModel(
        model=model, config=config, plan=plan, step=chosen, run_dir=run_dir, spec_dir=folder, skipped=skipped
    )
