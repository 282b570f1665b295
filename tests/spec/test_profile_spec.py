"""`[logging] profile = { start = S, steps = N }`: validated, and operational."""

from __future__ import annotations

import pytest

from expspec.compiler import plan_spec
from expspec.spec import SpecError, load_spec
from tests.conftest import EXAMPLES, run_exp
from tests.helpers import MINIMAL

DIGITS = EXAMPLES / "digits_mlp.toml"


def logging(write_spec, body: str):
    return write_spec(MINIMAL + "\n[logging]\n" + body + "\n")


@pytest.mark.parametrize(
    "body",
    ["profile = { start = 3, steps = 2 }", "profile.start = 3\nprofile.steps = 2"],
    ids=["inline", "dotted"],
)
def test_profile_loads(write_spec, body):
    profile = load_spec(logging(write_spec, body)).experiment.logging.profile
    assert profile is not None and (profile.start, profile.steps) == (3, 2)


def test_no_profile_by_default(write_spec):
    assert load_spec(write_spec(MINIMAL)).experiment.logging.profile is None


@pytest.mark.parametrize(
    "body,expected",
    [
        ("profile = { start = 0, steps = 2 }", "logging.profile.start: must be > 0 (got 0)"),
        ("profile = { start = -4, steps = 2 }", "logging.profile.start: must be > 0 (got -4)"),
        ("profile = { start = 3, steps = 0 }", "logging.profile.steps: must be > 0 (got 0)"),
        ('profile = { start = "3", steps = 2 }', 'logging.profile.start: must be an integer (got "3")'),
        ("profile = { start = 1.5, steps = 2 }", "logging.profile.start: must be an integer (got 1.5)"),
        ("profile = { start = 3 }", "logging.profile.steps: required key is missing"),
        ("profile = { steps = 2 }", "logging.profile.start: required key is missing"),
        (
            "profile = { start = 3, steps = 2, every = 5 }",
            "logging.profile.every: unknown key (allowed here: start, steps) (got 5)",
        ),
        ("profile = true", "logging.profile: "),
    ],
)
def test_bad_profiles_give_one_line_naming_the_key(write_spec, body, expected):
    spec = logging(write_spec, body)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    (line,) = [str(p) for p in caught.value.problems]
    assert line.startswith(f"{spec}:") and expected in line, line


def test_cli_refuses_a_bad_profile_with_exit_2(write_spec):
    spec = logging(write_spec, "profile = { start = 0, steps = 2 }")
    for command in ("validate", "plan", "run"):
        result = run_exp(command, str(spec))
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"{spec}:13: logging.profile.start: must be > 0"), line
        assert "Traceback" not in result.stderr
    assert not (spec.parent / "runs").exists()


def test_a_bad_override_names_the_key():
    result = run_exp("plan", str(DIGITS), "logging.profile={start=3,steps=-1}")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "logging.profile.steps: must be > 0 (got -1)" in line


@pytest.mark.parametrize("override", ["logging.profile={start=3,steps=2}", "logging.profile={start=1,steps=100}"])
def test_profiling_is_operational(override):
    base, profiled = plan_spec(DIGITS, []), plan_spec(DIGITS, [override])
    assert profiled.fingerprints.trajectory == base.fingerprints.trajectory
    assert profiled.fingerprints.spec != base.fingerprints.spec
    assert profiled.fields["logging.profile.start"] == profiled.fields["logging.profile.steps"] == "operational"
    assert base.fields["logging.profile"] == "operational"


def test_explain_shows_the_window_as_operational():
    result = run_exp("plan", str(DIGITS), "logging.profile={start=3,steps=2}", "--explain")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stderr.splitlines() if line.strip()}
    for key, value in (("logging.profile.start", "3"), ("logging.profile.steps", "2")):
        assert rows[key].split()[2] == value and rows[key].rstrip().endswith("operational"), rows[key]
