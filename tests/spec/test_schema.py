"""The JSON Schema accepts every example and refuses what the models refuse."""

from __future__ import annotations

import json
import tomllib

import jsonschema
import pytest

from expspec.spec import spec_schema
from expspec.spec.compose import compose
from tests.conftest import EXAMPLE_SPECS, ROOT, run_exp
from tests.helpers import MINIMAL

VALIDATOR = jsonschema.Draft202012Validator(spec_schema())


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(spec_schema())


@pytest.mark.parametrize("spec", [p for p in EXAMPLE_SPECS if p.name != "base.toml"], ids=lambda p: p.name)
def test_every_example_validates_against_the_schema(spec):
    composed = compose(spec).data  # `extends` resolved, as the loader sees it
    assert list(VALIDATOR.iter_errors(composed)) == []
    raw = tomllib.loads(spec.read_text())
    assert list(VALIDATOR.iter_errors(raw)) == []  # the file itself, as an editor sees it


@pytest.mark.parametrize(
    "edit",
    [
        ('kind = "mlp"', 'kind = "mlp"\nhiden = [3]'),
        ("steps = 10", "steps = -10"),
        ("steps = 10", 'steps = "10"'),
        ('kind = "sklearn_digits"', 'kind = "mnist"'),
        ('name = "t"', 'name = "../escape"'),
    ],
)
def test_schema_refuses_invalid_documents(edit):
    assert list(VALIDATOR.iter_errors(tomllib.loads(MINIMAL.replace(*edit))))


def test_minimal_document_validates():
    assert list(VALIDATOR.iter_errors(tomllib.loads(MINIMAL))) == []


def test_properties_carry_their_class():
    props = spec_schema()["$defs"]["TrainSpec"]["properties"]
    assert props["log_every"]["x-exp-class"] == "operational"
    assert props["grad_accum"]["x-exp-class"] == "trajectory"


def test_committed_schema_is_current():
    committed = json.loads((ROOT / "spec.schema.json").read_text())
    assert committed == spec_schema(), "spec.schema.json is stale: run `exp schema -o spec.schema.json`"


def test_cli_schema_matches_and_writes_a_file(tmp_path):
    printed = run_exp("schema")
    assert printed.returncode == 0 and json.loads(printed.stdout) == spec_schema()
    out = tmp_path / "s.json"
    written = run_exp("schema", "-o", str(out))
    assert written.returncode == 0 and out.read_text() == printed.stdout


@pytest.mark.parametrize(
    "doc,valid",
    [
        ({"extends": "base.toml", "optimizer": {"learning_rate": 0.1}}, True),
        ({"extends": "base.toml", "model": {"lora": {"rank": 4}}}, True),
        ({"extends": "base.toml", "optimizer": {"learning_rat": 0.1}}, False),
        ({"extends": "base.toml", "optimizer": {"learning_rate": -1}}, False),
        ({"optimizer": {"learning_rate": 0.1}}, False),
    ],
)
def test_files_that_extend_are_checked_as_partial_specs(doc, valid):
    assert (list(VALIDATOR.iter_errors(doc)) == []) is valid
