"""The experiment trackers of `[logging]`: a Weights & Biases run, an MLflow run.

Both are operational: a tracker shows a run, it never changes its bits. Each
receives every record of `metrics.jsonl`, the resolved plan, the fingerprints and
the environment class, the run's events and the verdicts of `exp audit RUN_DIR`.
"""

from __future__ import annotations

from typing import Literal

from .fields import SpecModel, operational
from .types import NonEmptyStr, StrTuple

__all__ = ["MlflowSpec", "WandbSpec"]


class WandbSpec(SpecModel):
    """A Weights & Biases run tied to the run directory: a resumed attempt continues it."""

    project: NonEmptyStr | None = operational(None)
    """The W&B project; unset: the spec's `name`."""
    entity: NonEmptyStr | None = operational(None)
    """The team or user that owns the project; unset: W&B's default entity."""
    mode: Literal["online", "offline"] = operational("online")
    """`online` sends as it goes; `offline` writes the run's files only (under the run
    directory's `wandb/` folder, or `$WANDB_DIR`), for `wandb sync` later."""
    name: NonEmptyStr | None = operational(None)
    """The W&B run's display name; unset: the run directory's name."""
    group: NonEmptyStr | None = operational(None)
    """Groups runs in the W&B interface (e.g. one sweep's points)."""
    tags: StrTuple = operational(())
    """Tags added to the ones expspec sets (the fingerprints and the environment class)."""


class MlflowSpec(SpecModel):
    """An MLflow run tied to the run directory: a resumed attempt continues it."""

    tracking_uri: NonEmptyStr | None = operational(None)
    """Where MLflow keeps runs: `file:<folder>` (no server; a relative folder resolves against
    the spec file's folder), `http://host:5000`, `sqlite:///mlflow.db`, ...; unset: MLflow's
    default (`$MLFLOW_TRACKING_URI`)."""
    experiment: NonEmptyStr | None = operational(None)
    """The MLflow experiment, created when missing; unset: the spec's `name`."""
    run_name: NonEmptyStr | None = operational(None)
    """The MLflow run's name; unset: the run directory's name."""
