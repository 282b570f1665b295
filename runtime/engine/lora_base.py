"""The base checkpoint a LoRA run trains on: chosen once, recorded, verified on every read.

A fresh LoRA run takes the newest checkpoint of the base run that
`lora.init_from` names (or the one step folder it names) and records it as
`base_checkpoint` (run, step, full hash) in its first `start` event and in each
of its checkpoints. Every later attempt re-reads exactly that step, never the
base's latest: a base run may train on (an operational change there) without
changing a single bit of the LoRA runs made from it. Every read is verified
against the hash the base recorded when it saved, since Orbax stores raw chunks
without checksums: damaged base weights are refused, never trained on. All of
it happens before the LoRA run directory is touched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from expspec.compiler import Plan
from expspec.runtime.engine.checkpoint_reads import CheckpointDamaged, committed_steps, newest_record, read_verified
from expspec.runtime.models import ModelError
from expspec.runtime.runs.records import ignore_damage, read_jsonl
from expspec.runtime.runs.run_files import Event, RunFiles
from expspec.runtime.runs.rundir import RunDir, RunRefused
from expspec.runtime.types import PyTree

__all__ = ["BaseCheckpoint", "BaseWeights", "Recorded", "pin_base", "read_base", "recorded_base"]

_OTHER_RUN_DIR = "use another --run-dir to start from the base as it is now"


@dataclass(frozen=True)
class BaseCheckpoint:
    """Which base checkpoint a LoRA run trains on."""

    run: str
    step: int
    full_hash: str
    """The full hash the base recorded for this checkpoint when it saved it."""

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Any) -> BaseCheckpoint | None:
        if not isinstance(record, dict):
            return None
        run, step, digest = record.get("run"), record.get("step"), record.get("full_hash")
        if isinstance(run, str) and isinstance(step, int) and isinstance(digest, str):
            return cls(run, step, digest)
        return None


@dataclass(frozen=True)
class BaseWeights:
    """A verified base checkpoint's parameters (host arrays) and where they came from."""

    checkpoint: BaseCheckpoint
    params: PyTree
    expected_weights: str | None = None
    """For a run recorded before `base_checkpoint` existed: the hash of the base
    weights it started from, which the loaded ones must equal."""


@dataclass(frozen=True)
class Recorded:
    """What a LoRA run directory says about its base, from its first attempt."""

    checkpoint: BaseCheckpoint | None
    base_weights: str | None
    where: str
    """The record it was read from, for messages."""


def _checkpoint_dir(path: Path) -> tuple[Path, int | None]:
    """A run directory, its checkpoints folder, or one step folder -> the checkpoints folder
    and the step the path names, if it names one."""
    default = RunFiles(path).default_checkpoints
    if default.is_dir():
        return default, None
    if path.name.isdigit() and (path / "state").is_dir():
        return path.parent, int(path.name)
    return path, None


def recorded_base(rundir: RunDir, checkpoints: Path) -> Recorded | None:
    """The base checkpoint a run directory started from: its first `start` event's,
    else its newest checkpoint's record (a segment rerun has no events); None when fresh."""
    weights = None
    # A damaged line is skipped (the resumed run names it); without the start event the newest checkpoint tells.
    for event in read_jsonl(rundir.events, ignore_damage):
        if event.get("event") == Event.START:
            pinned = BaseCheckpoint.from_record(event.get("base_checkpoint"))
            if pinned is not None:
                return Recorded(pinned, event.get("base_weights"), f"{rundir.events} (first start event)")
            weights = event.get("base_weights")
            break
    newest = newest_record(checkpoints)
    if newest is not None:
        step, meta = newest
        pinned = BaseCheckpoint.from_record(meta.get("base_checkpoint"))
        if pinned is not None:
            return Recorded(pinned, meta.get("base_weights"), f"{checkpoints}/{step}")
        weights = weights or meta.get("base_weights")
    return Recorded(None, weights, str(rundir.events)) if isinstance(weights, str) else None


def read_base(source: Path, recorded: Recorded | None = None) -> BaseWeights:
    """The verified base weights at `source`: the recorded step when there is one, else the
    step `source` names or the base's newest; raises `RunRefused` naming the base run and step."""
    directory, named = _checkpoint_dir(source)
    run = str(source.resolve())
    pinned = recorded.checkpoint if recorded is not None else None
    steps = committed_steps(directory)
    if pinned is not None:
        step = pinned.step
        if step not in steps:
            raise RunRefused(
                f"lora.init_from: base run {run} no longer has checkpoint step {step}, which this run started "
                f"from (full hash {pinned.full_hash[:12]}, recorded in {recorded.where}); {_OTHER_RUN_DIR}"
            )
    elif named is not None or steps:
        step = named if named is not None else steps[-1]
    else:
        raise RunRefused(f"lora.init_from: base run {run} has no committed checkpoint")
    try:
        state, meta = read_verified(directory, step)
    except CheckpointDamaged as err:
        older = [s for s in steps if s < step]
        hint = (
            f"; to start from an older step, set lora.init_from to its folder, e.g. {directory / str(older[-1])}"
            if older and pinned is None
            else ""
        )
        raise RunRefused(
            f"lora.init_from: base run {run} checkpoint step {step} is damaged ({err.reason}); "
            f"refusing to train on it{hint}"
        ) from None
    if pinned is not None and meta["full_hash"] != pinned.full_hash:
        raise RunRefused(
            f"lora.init_from: base run {run} checkpoint step {step} now has full hash {meta['full_hash'][:12]}, "
            f"this run started from {pinned.full_hash[:12]} (recorded in {recorded.where}); {_OTHER_RUN_DIR}"
        )
    if not isinstance(state, dict) or "frozen" not in state or "params" not in state:
        raise ModelError(f"lora.init_from: {source} holds a LoRA-only checkpoint, not full weights")
    expected = recorded.base_weights if recorded is not None and pinned is None else None
    return BaseWeights(BaseCheckpoint(run, step, meta["full_hash"]), state["params"], expected)


def pin_base(plan: Plan, rundir: RunDir, spec_dir: Path) -> BaseWeights | None:
    """The base weights a LoRA run with `lora.init_from` trains on in `rundir` (None without one).

    Reads only: call it before anything in `rundir` is written, so a refusal leaves it as it was.
    """
    lora = plan.spec.model.lora
    if lora is None or not lora.init_from:
        return None
    recorded = recorded_base(rundir, rundir.checkpoints(plan, spec_dir))
    return read_base(spec_dir / lora.init_from, recorded)
