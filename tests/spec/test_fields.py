"""Every spec field is documented and declares whether it changes the math."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from expspec.spec import Experiment, field_class, load_spec
from expspec.spec.fields import is_path_field
from expspec.spec.load import PATH_KEYS
from expspec.spec.walk import iter_fields
from tests.conftest import EXAMPLES

ALL_FIELDS = list(iter_fields(Experiment))


@pytest.mark.parametrize("path,info,owner", ALL_FIELDS, ids=[".".join(p) + f"@{o.__name__}" for p, _, o in ALL_FIELDS])
def test_field_is_classed_and_documented(path, info, owner):
    assert field_class(info) in ("trajectory", "operational")
    assert info.description and len(info.description) > 10, f"{'.'.join(path)} on {owner.__name__} has no docstring"


def test_walk_reaches_every_section_variant():
    owners = {owner.__name__ for _, _, owner in ALL_FIELDS}
    assert {
        "MLP",
        "Transformer",
        "CustomModel",
        "LoRA",
        "Digits",
        "TextChars",
        "Synthetic",
        "Npz",
        "CustomData",
        "SGD",
        "Momentum",
        "Adam",
        "AdamW",
        "Lion",
        "Constant",
        "Cosine",
        "Linear",
        "TrainSpec",
        "CheckpointSpec",
        "ThrottleSpec",
        "DeterminismSpec",
        "MeshSpec",
        "LoggingSpec",
    } <= owners


def test_path_fields_are_the_ones_holding_files():
    assert set(PATH_KEYS) == {
        ("data", "path"),
        ("data", "files"),
        ("data", "eval_files"),
        ("data", "tokenizer"),
        ("model", "path"),
        ("model", "lora", "init_from"),
        ("checkpoint", "dir"),
    }
    assert all(is_path_field(info) for path, info, _ in ALL_FIELDS if path in PATH_KEYS)


def test_classes_that_matter_for_fingerprints():
    classes = {".".join(p): field_class(i) for p, i, _ in ALL_FIELDS}
    for key in (
        "train.log_every",
        "train.eval_every",
        "train.steps",
        "checkpoint.every_steps",
        "throttle.max_inflight",
        "name",
        "mesh.data",
    ):
        assert classes[key] == "operational", key
    for key in (
        "seed",
        "optimizer.learning_rate",
        "model.hidden",
        "data.batch_size",
        "seeds",
        "determinism.threefry_partitionable",
        "train.grad_accum",
    ):
        assert classes[key] == "trajectory", key


def test_experiment_is_frozen():
    experiment = load_spec(EXAMPLES / "digits_mlp.toml").experiment
    with pytest.raises(ValidationError):
        experiment.seed = 3  # type: ignore[misc]
    assert isinstance(experiment.model.hidden, tuple)


SECTION_DEFAULTS = [(p, i, o) for p, i, o in ALL_FIELDS if isinstance(i.default, BaseModel)]


@pytest.mark.parametrize(
    "info", [i for _, i, _ in SECTION_DEFAULTS], ids=[".".join(p) + f"@{o.__name__}" for p, _, o in SECTION_DEFAULTS]
)
def test_section_defaults_validate_unchanged(info):
    # They are made with `model_construct` (no validator built at import), so they
    # must be exactly what validating them gives.
    default = info.default
    again = type(default).model_validate(default.model_dump(mode="json", by_alias=True))
    assert again == default and again.model_dump() == default.model_dump()
