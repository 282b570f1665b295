"""Loading: `extends` chains, deep merge, overrides, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from expspec.spec import SpecError, load_spec
from expspec.spec.overrides import parse_override
from tests.conftest import EXAMPLE_SPECS, EXAMPLES
from tests.helpers import MINIMAL

COMPLETE_EXAMPLES = [p for p in EXAMPLE_SPECS if p.name != "base.toml"]


@pytest.mark.parametrize("spec", COMPLETE_EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(spec):
    loaded = load_spec(spec)
    assert loaded.experiment.name
    assert loaded.files[0] == str(spec)


def test_base_is_used_through_extends():
    users = [p for p in COMPLETE_EXAMPLES if "base.toml" in [Path(f).name for f in load_spec(p).files]]
    assert len(users) >= 2


def test_extends_merges_tables_key_by_key(write_spec):
    write_spec('[optimizer]\nkind = "adam"\nlearning_rate = 0.5\nb1 = 0.8\n', "base.toml")
    spec = write_spec('extends = "base.toml"\n' + MINIMAL + "[optimizer]\nlearning_rate = 0.25\n")
    optimizer = load_spec(spec).experiment.optimizer
    assert (optimizer.kind, optimizer.learning_rate, optimizer.b1) == ("adam", 0.25, 0.8)


def test_extends_replaces_a_table_whose_kind_changes(write_spec):
    write_spec(MINIMAL.replace('kind = "mlp"', 'kind = "mlp"\nhidden = [8]'), "base.toml")
    spec = write_spec('extends = "base.toml"\n[model]\nkind = "transformer"\nlayers = 1\n')
    model = load_spec(spec).experiment.model
    assert model.kind == "transformer" and model.layers == 1


def test_extends_resolves_relative_to_the_extending_file(tmp_path, write_spec, monkeypatch):
    write_spec(MINIMAL, "shared/base.toml")
    write_spec('extends = "shared/base.toml"\nname = "child"\n', "child.toml")
    monkeypatch.chdir(tmp_path.parent)
    assert load_spec(tmp_path / "child.toml").experiment.name == "child"


@pytest.mark.parametrize("chain", [["a"], ["a", "b"], ["a", "b", "c"]])
def test_extends_cycles_are_errors(write_spec, chain):
    for name, nxt in zip(chain, chain[1:] + chain[:1]):
        write_spec(f'name = "{name}"\nextends = "{nxt}.toml"\n', f"{name}.toml")
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec('extends = "a.toml"\n', "start.toml"))
    (problem,) = caught.value.problems
    assert problem.path == "extends" and "cycle" in problem.message and problem.line is not None


def test_missing_extends_names_file_line_and_key(write_spec):
    spec = write_spec('# a comment\nextends = "nowhere.toml"\n' + MINIMAL)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert str(caught.value) == f'{spec}:2: extends: no such file (got "nowhere.toml")'


def test_relative_paths_resolve_against_the_file_that_wrote_them(tmp_path, write_spec):
    write_spec(
        '[data]\nkind = "text_chars"\npath = "corpus.txt"\n[model]\nkind = "transformer"\n',
        "shared/base.toml",
    )
    spec = write_spec('extends = "shared/base.toml"\nname = "t"\n[train]\nsteps = 5\n')
    assert load_spec(spec).experiment.data.path == "shared/corpus.txt"


def test_override_paths_resolve_against_the_working_directory(tmp_path, write_spec, monkeypatch):
    spec = write_spec(MINIMAL, "specs/spec.toml")
    monkeypatch.chdir(tmp_path)
    loaded = load_spec(spec, ['data={kind="npz", path="data/x.npz"}'])
    assert loaded.experiment.data.path == "../data/x.npz"


@pytest.mark.parametrize(
    "text,path,value",
    [
        ("train.steps=100", ("train", "steps"), 100),
        ('optimizer.kind="adam"', ("optimizer", "kind"), "adam"),
        ("optimizer.kind=adam", ("optimizer", "kind"), "adam"),
        ("model.hidden=[64,64]", ("model", "hidden"), [64, 64]),
        ('seeds."data.shuffle"=1234', ("seeds", "data.shuffle"), 1234),
        ("optimizer.learning_rate=1e-3", ("optimizer", "learning_rate"), 1e-3),
        ("checkpoint.enabled=false", ("checkpoint", "enabled"), False),
        (
            'optimizer.schedule={kind="cosine", warmup_steps=5}',
            ("optimizer", "schedule"),
            {"kind": "cosine", "warmup_steps": 5},
        ),
    ],
)
def test_override_values_are_toml(text, path, value):
    override = parse_override(text)
    assert (override.path, override.value) == (path, value)


@pytest.mark.parametrize("text", ["train.steps", "=3", "train.steps=", "a..b=1", "x=[1,", "x=two words", "a=1\nb=2"])
def test_malformed_overrides_are_errors(text):
    with pytest.raises(SpecError) as caught:
        parse_override(text)
    assert "override" in str(caught.value)


def test_overrides_apply_after_extends_and_are_recorded():
    loaded = load_spec(EXAMPLES / "digits_mlp.toml", ["train.steps=7", "model.hidden=[32]"])
    assert loaded.experiment.train.steps == 7 and loaded.experiment.model.hidden == (32,)
    assert [o.text for o in loaded.overrides] == ["train.steps=7", "model.hidden=[32]"]


def test_pinned_seeds_accept_dotted_and_quoted_keys(write_spec):
    dotted = load_spec(write_spec(MINIMAL + "[seeds]\ndata.shuffle = 5\n", "a.toml")).experiment
    quoted = load_spec(write_spec(MINIMAL + '[seeds]\n"data.shuffle" = 5\n', "b.toml")).experiment
    assert dotted.seeds == quoted.seeds == {"data.shuffle": 5}


def test_override_into_a_scalar_is_an_error():
    with pytest.raises(SpecError) as caught:
        load_spec(EXAMPLES / "digits_mlp.toml", ["train.steps.x=1"])
    assert str(caught.value).startswith("<command line>: train.steps: is not a table")


@pytest.mark.parametrize("target", ["../outside.toml", "/etc/hostname", "sub/../../outside.toml"])
def test_extends_cannot_leave_the_spec_folder(tmp_path, target):
    (tmp_path / "outside.toml").write_text(MINIMAL)
    spec = tmp_path / "inner" / "spec.toml"
    spec.parent.mkdir()
    spec.write_text(f'extends = "{target}"\n')
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    (problem,) = caught.value.problems
    assert problem.path == "extends" and "inside inner/" in problem.message


def test_extends_may_reach_into_subfolders(write_spec):
    write_spec(MINIMAL, "shared/deeper/base.toml")
    assert load_spec(write_spec('extends = "shared/deeper/base.toml"\n')).experiment.name == "t"
