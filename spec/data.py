"""The `[data]` section: where batches come from."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .fields import SpecModel, operational, trajectory
from .rules import rule_error
from .types import Args, NonEmptyStr, PathList, Target

__all__ = ["CustomData", "DataSpec", "Digits", "Npz", "Synthetic", "TextChars", "TextData"]

TestFraction = Annotated[float, Field(gt=0, lt=1)]


class _Data(SpecModel):
    batch_size: int = trajectory(64, gt=0, le=1 << 20)
    """Examples per optimizer step (split into `train.grad_accum` micro-batches)."""


class Digits(_Data):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""

    kind: Literal["sklearn_digits"] = trajectory()
    """Data source."""
    test_fraction: TestFraction = trajectory(0.2)
    """Share of examples held out for evaluation (split drawn from the `data.split` stream)."""


class TextChars(_Data):
    """Character-level language modelling on a text: windows of `seq_len` bytes."""

    kind: Literal["text_chars"] = trajectory()
    """Data source."""
    path: NonEmptyStr = trajectory(path=True)
    """A UTF-8 text file; relative paths resolve against the spec file's folder.
    Its bytes are fingerprinted as the run's `data` input (there are no built-in
    texts: one read from the installed Python would differ between patch releases)."""
    seq_len: int = trajectory(128, gt=0, le=1 << 20)
    """Tokens per training window."""
    test_fraction: TestFraction = trajectory(0.1)
    """Share of the text (its tail) held out for evaluation."""


class TextData(_Data):
    """Your own corpus, tokenized: local files of any size, read memory-mapped.

    Three record styles: plain text (`text_field`; every token is a target),
    prompt/completion (`prompt_field` and `completion_field`; only completion
    tokens are targets) and chat (`messages_field`, rendered with the
    tokenizer's chat template; only assistant tokens are targets).
    """

    kind: Literal["text"] = trajectory()
    """Data source."""
    files: PathList = trajectory(path=True)
    """Training files: a path, a glob (`data/*.jsonl`, `**` allowed) or a list of them, relative to the
    spec file; read in sorted order. Their bytes are fingerprinted as the run's `data` input."""
    format: Literal["auto", "jsonl", "parquet", "arrow", "text", "saved", "arrayrecord"] = trajectory("auto")
    """File format; `auto` decides by suffix. `saved` is a folder written by `datasets`' `save_to_disk`;
    `arrayrecord` records are UTF-8 JSON objects (or plain text documents)."""
    sample_by: Literal["line", "paragraph", "document"] = trajectory("line")
    """Plain text only: one document per line, per blank-line-separated paragraph, or per file."""
    eval_files: PathList | None = trajectory(None, path=True)
    """Held-out files (same format); without them `test_fraction` of the records is held out."""
    test_fraction: TestFraction = trajectory(0.05)
    """Share of the records held out for evaluation when `eval_files` is not given (drawn from the
    `data.split` stream)."""
    tokenizer: NonEmptyStr = trajectory(path=True)
    """A Hugging Face `tokenizer.json`, a SentencePiece `*.model`, or a model folder holding one (and its
    `tokenizer_config.json`: BOS/EOS/pad tokens and the chat template). Its bytes enter the trajectory
    fingerprint."""
    seq_len: int = trajectory(512, ge=2, le=1 << 20)
    """Tokens per training row; longer documents are truncated."""
    pack: bool = trajectory(False)
    """Pack several documents into each row (segment ids keep them apart) instead of one per row."""
    text_field: NonEmptyStr = trajectory("text")
    """Record field holding a plain text document (plain text files call it `text`)."""
    prompt_field: NonEmptyStr | None = trajectory(None)
    """Record field holding the prompt (context only); set together with `completion_field`."""
    completion_field: NonEmptyStr | None = trajectory(None)
    """Record field holding the completion: the only tokens the loss counts."""
    messages_field: NonEmptyStr | None = trajectory(None)
    """Record field holding a chat: a list of `{role, content}`; only assistant turns are counted."""
    prefetch: int = operational(4, ge=0, le=1024)
    """Batches assembled ahead of the device in a background thread (0: on the loop thread)."""

    @model_validator(mode="after")
    def _one_record_style(self) -> TextData:
        if (self.prompt_field is None) != (self.completion_field is None):
            missing = "completion_field" if self.completion_field is None else "prompt_field"
            raise rule_error(missing, "prompt_field and completion_field are set together")
        if self.messages_field is not None and self.prompt_field is not None:
            raise rule_error("messages_field", "a record is either chat or prompt/completion: unset data.prompt_field")
        return self

    @property
    def style(self) -> Literal["text", "prompt_completion", "chat"]:
        """Which record style the fields select."""
        if self.messages_field is not None:
            return "chat"
        return "prompt_completion" if self.prompt_field is not None else "text"


class Synthetic(_Data):
    """Data generated from the `data.split` stream: no files, no downloads."""

    kind: Literal["synthetic"] = trajectory()
    """Data source."""
    task: Literal["classification", "regression"] = trajectory("classification")
    """Whether targets are class labels or real values."""
    samples: int = trajectory(2048, gt=1, le=1 << 26)
    """Number of examples generated."""
    features: int = trajectory(16, gt=0, le=1 << 16)
    """Input dimension."""
    classes: int = trajectory(4, gt=1, le=1 << 16)
    """Number of classes (classification only)."""
    noise: float = trajectory(0.1, ge=0, le=1e3)
    """Standard deviation of the noise added to targets or logits."""
    test_fraction: TestFraction = trajectory(0.2)
    """Share of examples held out for evaluation."""


class Npz(_Data):
    """Arrays from a NumPy `.npz` file (read without pickle)."""

    kind: Literal["npz"] = trajectory()
    """Data source."""
    path: NonEmptyStr = trajectory(path=True)
    """The `.npz` file; relative paths resolve against the spec file's folder."""
    inputs: NonEmptyStr = trajectory("x")
    """Name of the input array inside the file."""
    targets: NonEmptyStr = trajectory("y")
    """Name of the target array inside the file."""
    test_fraction: TestFraction = trajectory(0.2)
    """Share of examples held out for evaluation."""

    @model_validator(mode="after")
    def _distinct_arrays(self) -> Npz:
        if self.inputs == self.targets:
            raise rule_error("targets", "must differ from data.inputs", got=self.targets)
        return self


class CustomData(_Data):
    """Batches from your own factory `(seed, **args)` returning an object with
    `train_batch(step)` and `eval_batches()`."""

    kind: Literal["custom"] = trajectory()
    """Data source."""
    target: Target = trajectory()
    """Factory to call, written `package.module:function`; imported only when allowed."""
    args: Args = trajectory({})
    """Keyword arguments passed to the factory."""


DataSpec = Annotated[Digits | TextChars | TextData | Synthetic | Npz | CustomData, Field(discriminator="kind")]
