"""The `[model]` section: which network is trained, and optional LoRA."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .fields import SpecModel, trajectory
from .rules import rule_error
from .types import Args, Fraction, NonEmptyStr, PositiveIntTuple, StrTuple, Target

__all__ = ["CustomModel", "LoRA", "MLP", "ModelSpec", "Transformer"]

Activation = Literal["relu", "gelu", "tanh", "silu"]


class LoRA(SpecModel):
    """Low-rank adapters on named layers; only the adapters are trained."""

    rank: int = trajectory(8, gt=0, le=4096)
    """Rank of each adapter's two factors."""
    alpha: float = trajectory(16.0, gt=0, le=1e6)
    """Scale numerator: the adapter output is multiplied by `alpha / rank`."""
    targets: StrTuple = trajectory(min_length=1)
    """Names of the layers that get adapters (attribute names inside the model, e.g. `query`)."""
    init_from: NonEmptyStr | None = trajectory(None, path=True)
    """Run directory (latest checkpoint) or checkpoint folder of a base run whose parameters
    are loaded before LoRA training starts. Without it the base weights come from the `init`
    stream. Relative paths resolve against the folder of the spec file that wrote them."""


class _Model(SpecModel):
    lora: LoRA | None = trajectory(None)
    """Train low-rank adapters instead of the full network."""


class MLP(_Model):
    """A multi-layer perceptron classifier or regressor."""

    kind: Literal["mlp"] = trajectory()
    """Model family."""
    hidden: PositiveIntTuple = trajectory((256, 256), max_length=64)
    """Width of each hidden layer, input side first."""
    activation: Activation = trajectory("relu")
    """Non-linearity between layers."""
    dropout: Fraction = trajectory(0.0)
    """Dropout rate after each hidden layer during training (keys from the `dropout` stream)."""


class Transformer(_Model):
    """A decoder-only language model with causal self-attention."""

    kind: Literal["transformer"] = trajectory()
    """Model family."""
    layers: int = trajectory(2, gt=0, le=1024)
    """Number of decoder blocks."""
    d_model: int = trajectory(128, gt=0, le=65536)
    """Width of the residual stream."""
    heads: int = trajectory(4, gt=0, le=1024)
    """Attention heads per block; must divide `d_model`."""
    d_ff: int = trajectory(512, gt=0, le=262144)
    """Hidden width of each block's feed-forward layer."""
    max_len: int = trajectory(256, gt=0, le=1 << 20)
    """Longest sequence the positional embedding covers."""
    dropout: Fraction = trajectory(0.1)
    """Dropout rate on attention weights and residual branches during training."""
    activation: Activation = trajectory("gelu")
    """Non-linearity of the feed-forward layers."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Transformer:
        if self.d_model % self.heads:
            raise rule_error(
                "heads",
                f"must divide model.d_model ({self.d_model}); pick a divisor of d_model",
                got=self.heads,
            )
        return self


class CustomModel(_Model):
    """A model built by your own factory `(rngs, **args) -> nnx.Module`."""

    kind: Literal["custom"] = trajectory()
    """Model family."""
    target: Target = trajectory()
    """Factory to call, written `package.module:function`; imported only when allowed
    (`--allow-import PREFIX`)."""
    args: Args = trajectory({})
    """Keyword arguments passed to the factory."""


ModelSpec = Annotated[MLP | Transformer | CustomModel, Field(discriminator="kind")]
