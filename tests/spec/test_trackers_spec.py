"""`[logging] wandb = {...}` and `[logging] mlflow = {...}`: validated, and operational."""

from __future__ import annotations

import pytest

from expspec.compiler import plan_spec
from expspec.spec import SpecError, load_spec
from tests.conftest import EXAMPLES, run_exp
from tests.helpers import MINIMAL

DIGITS = EXAMPLES / "digits_mlp.toml"


def logging(write_spec, body: str):
    return write_spec(MINIMAL + "\n[logging]\n" + body + "\n")


def test_tables_load_with_their_defaults(write_spec):
    spec = logging(
        write_spec,
        'wandb = { project = "digits", mode = "offline", tags = ["a", "b"] }\n'
        'mlflow = { tracking_uri = "file:mlruns", experiment = "digits" }',
    )
    logged = load_spec(spec).experiment.logging
    assert logged.wandb is not None and logged.mlflow is not None
    assert (logged.wandb.project, logged.wandb.mode, logged.wandb.tags) == ("digits", "offline", ("a", "b"))
    assert (logged.wandb.entity, logged.wandb.name, logged.wandb.group) == (None, None, None)
    assert (logged.mlflow.tracking_uri, logged.mlflow.experiment, logged.mlflow.run_name) == (
        "file:mlruns",
        "digits",
        None,
    )


def test_no_trackers_by_default(write_spec):
    logged = load_spec(write_spec(MINIMAL)).experiment.logging
    assert logged.wandb is None and logged.mlflow is None


def test_an_empty_table_asks_for_the_tracker_with_defaults(write_spec):
    logged = load_spec(logging(write_spec, "wandb = {}\nmlflow = {}")).experiment.logging
    assert logged.wandb is not None and logged.wandb.mode == "online" and logged.wandb.project is None
    assert logged.mlflow is not None and logged.mlflow.tracking_uri is None


@pytest.mark.parametrize(
    "body,expected",
    [
        ('wandb = { mode = "cloud" }', "logging.wandb.mode: must be one of 'online' or 'offline'"),
        ('wandb = { project = "" }', "logging.wandb.project: "),
        ("wandb = { tags = [1] }", "logging.wandb.tags.0: "),
        ('wandb = { projet = "x" }', "logging.wandb.projet: unknown key"),
        ('mlflow = { tracking_uri = "" }', "logging.mlflow.tracking_uri: "),
        ('mlflow = { experiment_name = "x" }', "logging.mlflow.experiment_name: unknown key"),
        ("mlflow = true", "logging.mlflow: "),
    ],
)
def test_bad_tables_give_one_line_naming_the_key(write_spec, body, expected):
    spec = logging(write_spec, body)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    (line,) = [str(p) for p in caught.value.problems]
    assert line.startswith(f"{spec}:") and expected in line, line


def test_cli_refuses_a_bad_table_with_exit_2(write_spec):
    spec = logging(write_spec, 'wandb = { mode = "cloud" }')
    for command in ("validate", "plan", "run"):
        result = run_exp(command, str(spec))
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"{spec}:13: logging.wandb.mode: "), line
    assert not (spec.parent / "runs").exists()


@pytest.mark.parametrize(
    "override",
    ['logging.wandb={project="p",mode="offline"}', 'logging.mlflow={tracking_uri="file:/tmp/m",experiment="e"}'],
)
def test_trackers_are_operational(override):
    base, tracked = plan_spec(DIGITS, []), plan_spec(DIGITS, [override])
    assert tracked.fingerprints.trajectory == base.fingerprints.trajectory
    assert tracked.fingerprints.spec != base.fingerprints.spec
    key = override.split("=", 1)[0]
    assert base.fields[key] == "operational"
    assert all(cls == "operational" for name, cls in tracked.fields.items() if name.startswith(key))
