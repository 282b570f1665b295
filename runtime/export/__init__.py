"""Export a run's trained decoder to Hugging Face folders (`exp export`).

`load_trained_model` rebuilds the model a run trained from its plan and one
verified checkpoint (also what generation starts from); `write_merged` and
`write_peft` write the two formats; `export_run` checks everything it can before
it loads anything, and writes the folder whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from expspec.runtime.export.staging import check_output, staged_folder
from expspec.runtime.export.trained import (
    DECODER_KINDS,
    ExportError,
    TrainedModel,
    check_decoder,
    load_trained_model,
    read_plan,
)

__all__ = [
    "DECODER_KINDS",
    "ExportError",
    "ExportResult",
    "Format",
    "TrainedModel",
    "export_run",
    "load_trained_model",
]

Format = Literal["peft", "merged"]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote, and from which checkpoint."""

    folder: Path
    format: Format
    step: int
    files: list[Path]
    """Relative to `folder`."""
    skipped: dict[int, str] = field(default_factory=dict)
    """Newer checkpoints passed over because they failed verification: step -> why."""


def export_run(
    run_dir: Path,
    out: Path,
    fmt: Format,
    *,
    step: int | None = None,
    spec_dir: Path | None = None,
    max_shard_bytes: int | None = None,
) -> ExportResult:
    """Export checkpoint `step` of the run (default: the newest that verifies) into the new folder `out`.

    Raises `ExportError` (or another `BadInput`) with a one-line reason; nothing is then written.
    """
    from expspec.runtime.export.merged import MAX_SHARD_BYTES, write_merged
    from expspec.runtime.export.peft import write_peft

    plan = read_plan(Path(run_dir))
    check_decoder(plan, Path(run_dir))
    if fmt == "peft" and plan.spec.model.lora is None:
        raise ExportError(f"{run_dir}: the run trained no LoRA adapters ([model.lora]); use --format merged")
    if fmt not in ("peft", "merged"):
        raise ExportError(f"--format: '{fmt}' is not a format; use peft or merged")
    check_output(Path(out))  # before the model is loaded: a refusal costs nothing
    trained = load_trained_model(Path(run_dir), step, spec_dir=spec_dir)
    with staged_folder(Path(out)) as folder:
        if fmt == "merged":
            written = write_merged(trained, folder, max_shard_bytes=max_shard_bytes or MAX_SHARD_BYTES)
        else:
            written = write_peft(trained, folder)
        files = sorted(path.relative_to(folder) for path in written)
    return ExportResult(Path(out), fmt, trained.step, files, dict(trained.skipped))
