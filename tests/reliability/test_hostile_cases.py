"""Hostile specs, by hand: one small case of each mutation kind, pinned to its exact problem line.

The fuzzer (`fuzz_specs.py`, run by `test_hostile_input.py`) only checks that
a mutated spec is refused in the right shape; these tests check *what* each
refusal says, for wrong values, deleted, unknown and misspelled keys, switched
kinds, deep nesting, damaged bytes, huge integers and bad overrides. Mutations
that reach outside the spec (`extends`, custom targets) are in
`test_hostile_references.py`.
"""

from __future__ import annotations

import pytest

from tests.helpers import MINIMAL
from tests.reliability import hostile_helpers
from tests.reliability.hostile_helpers import accepted, refused, validate

cwd = hostile_helpers.cwd
"""The shared `cwd` fixture, bound here so pytest finds it (importing the name would trip ruff's F811)."""

MLP_KEYS = "lora, kind, hidden, activation, dropout"
NAME_RULE = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


# ---------------------------------------------------------------------------
# One hand-written case per mutation kind.


@pytest.mark.parametrize(
    "edit,expected",
    [
        (("steps = 10", 'steps = "10"'), ':10: train.steps: must be an integer (got "10")'),
        (("steps = 10", "steps = true"), ":10: train.steps: must be an integer (got true)"),
        (("steps = 10", "steps = [10]"), ":10: train.steps: must be an integer (got [10])"),
        (("steps = 10", "steps = {a = 1}"), ":10: train.steps: must be an integer"),
        (("steps = 10", "steps = 1979-05-27"), ':10: train.steps: must be an integer (got "1979-05-27")'),
        (
            ("steps = 10", f"steps = {2**70}"),
            f":10: train.steps: integer outside the 64-bit range TOML allows (got {2**70})",
        ),
        (
            ("steps = 10", f"steps = {-(2**70)}"),
            f":10: train.steps: integer outside the 64-bit range TOML allows (got {-(2**70)})",
        ),
        (("steps = 10", "steps = 1e308"), ":10: train.steps: must be an integer (got 1e+308)"),
        (("steps = 10", "steps = inf"), ":10: train.steps: must be an integer (got inf)"),
        (('name = "t"', 'name = ""'), f':1: name: {NAME_RULE} (got "")'),
        (('name = "t"', "name = 1979-05-27T07:32:00Z"), ':1: name: must be a string (got "1979-05-27 07:32:00+00:00")'),
        (
            ('name = "t"', 'name = "\\u001b[2J\\u001b]0;x\\u0007"'),
            f':1: name: {NAME_RULE} (got "\\u001b[2J\\u001b]0;x\\u0007")',
        ),
        (
            ('name = "t"', f'name = "t"\ndescription = "{"x" * 10001}"'),
            ':2: description: is too long (at most 10000 characters) (got "' + "x" * 56 + "...)",
        ),
    ],
)
def test_leaf_replaced_by_a_wrong_value(tmp_path, cwd, edit, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace(*edit))
    assert validate(tmp_path, cwd, spec) == [f"{spec}{expected}"]


@pytest.mark.parametrize(
    "value,expected",
    [
        ("1e308", "must be <= 1000.0 (got 1e+308)"),
        ("nan", "must be a finite number (got nan)"),
        ("-inf", "must be a finite number (got -inf)"),
        ("1e400", "must be a finite number (got inf)"),
    ],
)
def test_non_finite_and_huge_floats(tmp_path, cwd, value, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL + f'[optimizer]\nkind = "sgd"\nlearning_rate = {value}\n')
    assert validate(tmp_path, cwd, spec) == [f"{spec}:13: optimizer.learning_rate: {expected}"]


@pytest.mark.parametrize(
    "edit,expected",
    [
        (('kind = "mlp"\n', ""), ":3: model.kind: required key is missing"),
        (("steps = 10\n", ""), ":9: train.steps: required key is missing"),
        (('[data]\nkind = "sklearn_digits"\n', ""), ": data: required key is missing"),
    ],
)
def test_deleted_keys(tmp_path, cwd, edit, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace(*edit))
    assert validate(tmp_path, cwd, spec) == [f"{spec}{expected}"]


def test_unknown_keys_with_dots_quotes_and_unicode(tmp_path, cwd):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace('kind = "mlp"', 'kind = "mlp"\n"a.b" = 1\n"quo\\"te" = 2\n"модель" = 3\n"" = 4'))
    assert validate(tmp_path, cwd, spec) == [
        f'{spec}:5: model."a.b": unknown key (allowed here: {MLP_KEYS}) (got 1)',
        f'{spec}:6: model."quo\\"te": unknown key (allowed here: {MLP_KEYS}) (got 2)',
        f'{spec}:7: model."модель": unknown key (allowed here: {MLP_KEYS}) (got 3)',
        f'{spec}:8: model."": unknown key (allowed here: {MLP_KEYS}) (got 4)',
    ]


@pytest.mark.parametrize("key", [":smile:", ":thumbs_up:", "[bold]x[/bold]", "[/]"])
def test_keys_that_look_like_console_markup_are_shown_as_written(tmp_path, cwd, key):
    """Product bug while this fails: rich turns `:smile:` into an emoji, so the line names a key the file lacks."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace('kind = "mlp"', f'kind = "mlp"\n"{key}" = 1'))
    assert validate(tmp_path, cwd, spec) == [f'{spec}:5: model."{key}": unknown key (allowed here: {MLP_KEYS}) (got 1)']


def test_terminal_escapes_in_a_seed_name_are_escaped(tmp_path, cwd):
    """Product bug while this fails: the seed-stream rule puts the raw name (an ESC byte) in its message."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL + '[seeds]\n"\\u001b[2J" = 1\n')
    (line,) = validate(tmp_path, cwd, spec)
    assert line.startswith(f'{spec}:12: seeds."\\u001b[2J": no seed stream named')


def test_key_renamed_to_a_near_miss(tmp_path, cwd):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace("steps = 10", "stpes = 10"))
    assert validate(tmp_path, cwd, spec) == [
        f"{spec}:9: train.steps: required key is missing",
        f"{spec}:10: train.stpes: unknown key; did you mean 'steps'? (got 10)",
    ]


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            ('kind = "mlp"', 'kind = "transformer"\nhidden = [8]'),
            ":5: model.hidden: unknown key (allowed here: lora, kind, layers, d_model, heads, d_ff, max_len, "
            "dropout, activation) (got [8])",
        ),
        (
            ('kind = "mlp"', 'kind = "MLP"'),
            ":4: model.kind: unknown kind; expected one of 'mlp', 'transformer', 'pretrained', 'llama', 'qwen2', 'qwen3', 'custom' (got \"MLP\")",
        ),
        (
            ('kind = "sklearn_digits"', 'kind = "adam"'),
            ":7: data.kind: unknown kind; expected one of 'sklearn_digits', 'text_chars', 'text', 'synthetic', 'npz', "
            "'custom' (got \"adam\")",
        ),
        (("[train]", "[[train]]"), ':9: train: must be a table (got [{"steps": 10}])'),
    ],
)
def test_switched_discriminators(tmp_path, cwd, edit, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace(*edit))
    assert validate(tmp_path, cwd, spec) == [f"{spec}{expected}"]


@pytest.mark.parametrize(
    "extra,expected",
    [
        ("x = " + "[" * 200 + "]" * 200, "nested deeper than 32 levels"),
        ("x = " + "{a = " * 200 + "1" + "}" * 200, "nested deeper than 32 levels"),
        ("x = " + "[{a = " * 100 + "1" + "}]" * 100, "nested deeper than 32 levels"),
        ("x." * 200 + "y = 1", "nested deeper than 32 levels"),
        ("[" + ".".join(["x"] * 200) + "]", "nested deeper than 32 levels"),
        ("x = " + "[" * 5000 + "]" * 5000, "invalid TOML: nested deeper than 32 levels"),
    ],
)
def test_deep_nesting(tmp_path, cwd, extra, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL + extra + "\n")
    assert validate(tmp_path, cwd, spec) == [f"{spec}: {expected}"]


# -- raw bytes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda b: b.replace(b"[train]", b"[tr\xffain]"), ":9: not valid UTF-8 (byte 0xff at column 4)"),
        (lambda b: b.replace(b"t", b"\xc3", 1), ":1: not valid UTF-8 (byte 0xc3 at column 9)"),
        (lambda b: MINIMAL.encode("utf-16"), ":1: not valid UTF-8 (byte 0xff at column 1)"),
        (lambda b: b[:-8], ":10: invalid TOML: expected '=' after a key in a key/value pair at end of file"),
        (lambda b: b.replace(b'"t"', b'"t\x00"'), ":1: invalid TOML: illegal character '\\x00' (column 10)"),
        (
            lambda b: b.replace(b"steps = 10", b"steps ~ 10"),
            ":10: invalid TOML: expected '=' after a key in a key/value pair (column 7)",
        ),
        (lambda b: b + b"#" * (1 << 20), ": larger than 1024 KiB; a spec is a small text file"),
    ],
    ids=["invalid-utf8", "truncated-utf8", "utf16", "truncated", "nul", "flipped-byte", "huge"],
)
def test_byte_damage(tmp_path, cwd, damage, expected):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(damage(MINIMAL.encode()))
    assert validate(tmp_path, cwd, spec) == [f"{spec}{expected}"]


@pytest.mark.parametrize(
    "form", [lambda b: b"\xef\xbb\xbf" + b, lambda b: b.replace(b"\n", b"\r\n")], ids=["bom", "crlf"]
)
def test_bom_and_crlf_change_nothing(tmp_path, cwd, form):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(form(MINIMAL.encode()))
    assert accepted(tmp_path, cwd, spec).startswith(f"ok  {spec}  t  ")
    spec.write_bytes(form(MINIMAL.replace("steps = 10", 'steps = "x"').encode()))
    assert validate(tmp_path, cwd, spec) == [f'{spec}:10: train.steps: must be an integer (got "x")']


# -- numbers Python will not print -------------------------------------------------


@pytest.mark.parametrize(
    "edit,where",
    [
        (("steps = 10", "steps = " + "9" * 4301), ":10: "),
        (('kind = "mlp"', 'kind = "transformer"\nmax_len = 0x' + "f" * 4000), ":5: model.max_len: "),
        (('kind = "mlp"', "kind = 0x" + "f" * 4000), ":4: model.kind: "),
    ],
    ids=["4301-digit-decimal", "hex-int-in-a-number-field", "hex-int-as-kind"],
)
def test_integers_longer_than_python_prints(tmp_path, cwd, edit, where):
    """Product bug while this fails: Python refuses int<->str beyond 4300 digits (tomllib's ValueError,
    `show_value`'s `repr`, and pydantic's tag error each raise or print a traceback)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL.replace(*edit))
    (line,) = validate(tmp_path, cwd, spec)
    assert line.startswith(f"{spec}{where}")


# -- overrides -------------------------------------------------------------------


def test_every_bad_override_gets_its_own_line(tmp_path, cwd):
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL)
    assert refused(tmp_path, cwd, "plan", spec, "--json", "--", "x", "train.steps==", "a b=1", "name.x=1") == [
        "<command line>: override 'x': expected KEY=VALUE, e.g. train.steps=100",
        "<command line>: override 'train.steps==': '=' is not a TOML value (quote strings: key=\"text\")",
        "<command line>: override 'a b=1': 'a b' is not a dotted key",
    ]
    assert refused(tmp_path, cwd, "plan", spec, "name.x=1") == [
        '<command line>: name: is not a table, cannot set name.x (got "t")'
    ]


def test_control_characters_in_an_override_key_are_escaped(tmp_path, cwd):
    """Product bug while this fails: "cannot set KEY" prints the override's key path raw (ESC, NUL, TAB)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL)
    (line,) = refused(tmp_path, cwd, "plan", spec, 'train.steps."\\u001b\\u0000"=1')
    assert line.startswith("<command line>: train.steps: is not a table, cannot set ")


@pytest.mark.parametrize(
    "override",
    [
        pytest.param("model=" + "[" * 3000, id="deep-open-array"),
        pytest.param("model.hidden=[" + "{a=" * 1000 + "1" + "}" * 1000 + "]", id="deep-inline-table"),
        pytest.param("train.steps=" + "9" * 4301, id="4301-digits"),
    ],
)
def test_hostile_override_values(tmp_path, cwd, override):
    """Product bug while this fails: the override parser lets tomllib's RecursionError/ValueError escape."""
    spec = tmp_path / "spec.toml"
    spec.write_text(MINIMAL)
    (line,) = refused(tmp_path, cwd, "plan", spec, override)
    assert line.startswith("<command line>: ")
