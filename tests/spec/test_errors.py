"""Bad input: every problem at once, one line each, `FILE:LINE: key.path: message (got VALUE)`."""

from __future__ import annotations

import pytest

from expspec.spec import SpecError, load_spec
from tests.helpers import MINIMAL


def problems(path, overrides=()):
    with pytest.raises(SpecError) as caught:
        load_spec(path, overrides)
    return [str(p) for p in caught.value.problems]


def test_three_problems_three_lines(write_spec):
    spec = write_spec(
        'name = "bad"\n'
        "[model]\n"
        'kind = "mlp"\n'
        "hiden = [64]\n"  # line 4: unknown key
        "[data]\n"
        'kind = "sklearn_digits"\n'
        'batch_size = "64"\n'  # line 7: wrong type
        "[optimizer]\n"
        'kind = "adam"\n'
        "learning_rate = -0.1\n"  # line 10: out of range
        "[train]\n"
        "steps = 10\n"
    )
    assert problems(spec) == [
        f"{spec}:4: model.hiden: unknown key; did you mean 'hidden'? (got [64])",
        f'{spec}:7: data.batch_size: must be an integer (got "64")',
        f"{spec}:10: optimizer.learning_rate: must be > 0.0 (got -0.1)",
    ]


def test_missing_key_points_at_its_table(write_spec):
    spec = write_spec('name = "x"\n[model]\nkind = "mlp"\n[data]\nkind = "sklearn_digits"\n\n[train]\neval_every = 5\n')
    assert problems(spec) == [f"{spec}:7: train.steps: required key is missing"]


def test_missing_section_names_the_file(write_spec):
    spec = write_spec('name = "x"\n[model]\nkind = "mlp"\n[train]\nsteps = 1\n')
    assert problems(spec) == [f"{spec}: data: required key is missing"]


def test_unknown_kind_lists_the_choices(write_spec):
    spec = write_spec(MINIMAL.replace('kind = "mlp"', 'kind = "cnn"'))
    assert problems(spec) == [
        f"{spec}:4: model.kind: unknown kind; expected one of 'mlp', 'transformer', 'pretrained', 'llama', 'qwen2', 'qwen3', 'custom' (got \"cnn\")"
    ]


def test_item_of_a_multiline_array_gets_its_own_line(write_spec):
    spec = write_spec(MINIMAL.replace('kind = "mlp"', 'kind = "mlp"\nhidden = [\n  64,\n  -1,\n]'))
    assert problems(spec) == [f"{spec}:7: model.hidden.1: must be > 0 (got -1)"]


def test_inline_table_keys_are_located(write_spec):
    spec = write_spec(MINIMAL + '[optimizer]\nkind = "adam"\nschedule = { kind = "cosine", warmup_steps = -5 }\n')
    assert problems(spec) == [f"{spec}:13: optimizer.schedule.warmup_steps: must be >= 0 (got -5)"]


def test_problems_in_an_extended_file_name_that_file(write_spec):
    base = write_spec(MINIMAL.replace("steps = 10", "steps = 10\nlog_every = 0"), "base.toml")
    spec = write_spec('extends = "base.toml"\nname = "child"\n', "child.toml")
    assert problems(spec) == [f"{base}:11: train.log_every: must be > 0 (got 0)"]


def test_override_problems_name_the_command_line(write_spec):
    spec = write_spec(MINIMAL)
    assert problems(spec, ["train.steps=-1"]) == ["<command line>: train.steps: must be > 0 (got -1)"]


@pytest.mark.parametrize(
    "extra,expected",
    [
        ("[model]\n", "invalid TOML: cannot declare ('model',) twice (column 7)"),
        ("x = \n", "invalid TOML: invalid value (column 5)"),
        ('y = "open\n', "invalid TOML: illegal character '\\n' (column 10)"),
    ],
)
def test_toml_syntax_errors_give_the_line(write_spec, extra, expected):
    spec = write_spec(MINIMAL + extra)
    (line,) = problems(spec)
    assert line == f"{spec}:11: {expected}"


def test_invalid_utf8_gives_line_and_column(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(MINIMAL.encode() + b'description = "caf\xe9"\n')
    assert problems(spec) == [f"{spec}:11: not valid UTF-8 (byte 0xe9 at column 19)"]


def test_nan_and_huge_numbers_are_refused(write_spec):
    spec = write_spec(MINIMAL + '[optimizer]\nkind = "sgd"\nlearning_rate = nan\n')
    assert problems(spec) == [f"{spec}:13: optimizer.learning_rate: must be a finite number (got nan)"]
    spec = write_spec(MINIMAL.replace("steps = 10", "steps = 99999999999999999"))
    assert problems(spec) == [f"{spec}:10: train.steps: must be <= 1000000000 (got 99999999999999999)"]


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            ('kind = "mlp"', 'kind = "transformer"\nd_model = 10\nheads = 4'),
            "model.heads: must divide model.d_model (10)",
        ),
        (
            ("[train]", "[determinism]\ndeterministic_ops = false\n[train]"),
            "determinism.deterministic_ops: contradicts",
        ),
        (("[train]", '[checkpoint]\nsave = "lora"\n[train]'), 'checkpoint.save: is "lora" but model.lora is not set'),
        (("steps = 10", "steps = 10\ngrad_accum = 3"), "train.grad_accum: must divide data.batch_size (64)"),
        (
            ("[train]", "[seeds]\ndata.shufle = 3\n[train]"),
            "seeds.\"data.shufle\": no seed stream named 'data.shufle'; did you mean 'data.shuffle'?",
        ),
        (
            ("[train]", "[checkpoint]\nevery_steps = 10\nkeep_every = 15\n[train]"),
            "checkpoint.keep_every: must be a multiple",
        ),
        (
            ("[train]", "[mesh]\ndata = -1\nfsdp = -1\n[train]"),
            "mesh.fsdp: only one of mesh.data and mesh.fsdp may be -1",
        ),
    ],
)
def test_cross_field_rules_name_the_key_and_the_fix(write_spec, edit, expected):
    spec = write_spec(MINIMAL.replace(*edit))
    (line,) = problems(spec)
    assert line.startswith(f"{spec}:") and expected in line


def test_dotted_seed_names_are_located(write_spec):
    spec = write_spec(MINIMAL + "[seeds]\ninit = 1\ndata.shufle = 3\n")
    (line,) = problems(spec)
    assert line.startswith(f'{spec}:13: seeds."data.shufle": no seed stream')


def test_hostile_keys_and_values_cannot_drive_the_terminal(write_spec):
    spec = write_spec(MINIMAL.replace("steps = 10", 'steps = "\\u001b[2J"\n"\\u001b]0;x" = 1'))
    lines = problems(spec)
    assert not any("\x1b" in line for line in lines)
    assert any('train."\\u001b]0;x": unknown key' in line for line in lines)


def test_rule_error_points_at_the_offending_line(write_spec):
    spec = write_spec(MINIMAL.replace('kind = "mlp"', 'kind = "transformer"\nd_model = 10\nheads = 4'))
    (line,) = problems(spec)
    assert line.startswith(f"{spec}:6: model.heads:")


def test_text_data_needs_a_path(write_spec):
    spec = write_spec(MINIMAL.replace('kind = "sklearn_digits"', 'kind = "text_chars"'))
    (line,) = problems(spec)
    assert "data.path: required key is missing" in line


@pytest.mark.parametrize("content,expected", [(None, "no such file"), ("dir", "is a directory, not a spec file")])
def test_unreadable_files(tmp_path, content, expected):
    target = tmp_path / "spec.toml"
    if content == "dir":
        target.mkdir()
    assert problems(target) == [f"{target}: {expected}"]
