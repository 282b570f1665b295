"""Hostile specs, property-tested: the spec fuzzer driven by Hypothesis, and its command line.

A spec may come from anyone, so whatever it holds, `exp validate`, `exp plan`
and `exp run` must not show a traceback, must not write to disk and must not
run a custom target's code without `--allow-import`. The fuzzer in
`fuzz_specs.py` checks those promises on random mutations of the examples; the
tests here run it (partly driven by Hypothesis, so failures shrink) and check
its command line's summary. One small case of each mutation kind, pinned to its
exact problem line, is in `test_hostile_cases.py` and
`test_hostile_references.py`; the real console script in a fresh process is
checked in `test_hostile_subprocess.py`.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import tomllib

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from expspec.spec import BASE_STREAMS
from expspec.spec.errors import key_path_text
from tests.reliability.fuzz_mutations import KINDS
from tests.reliability.fuzz_specs import SUMMARY, main, report, run_trial
from tests.reliability.fuzz_toml import dumps, leaves, tables
from tests.reliability.fuzz_trial import Trial
from tests.reliability.fuzz_workspace import SPECS, Case, workspace

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# The fuzzer, driven by Hypothesis.


@SETTINGS
@given(spec=st.sampled_from(SPECS), kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
def test_mutated_examples_are_accepted_or_refused_cleanly(spec, kind, seed):
    case, outcome = run_trial(seed, 0, kind, spec)
    assert not outcome.failures, report(seed, 0, case, outcome)


VALUES = st.one_of(
    st.integers(),
    st.integers(-(2**80), 2**80),
    st.floats(),
    st.booleans(),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.floats()), max_size=4),
    st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), st.integers(), max_size=3),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC])),
    st.dates(),
    st.times(),
)


@SETTINGS
@given(spec=st.sampled_from(SPECS), data=st.data())
def test_any_value_anywhere_is_accepted_or_refused_cleanly(spec, data):
    with workspace(spec) as ws:
        parsed = tomllib.loads(ws.main.read_text(encoding="utf-8"))
        container, key, path = data.draw(st.sampled_from(list(leaves(parsed))), label="leaf")
        container[key] = data.draw(VALUES, label="value")
        case = Case("leaf", f"{path} = {container[key]!r}", dumps(parsed).encode())
        outcome = Trial(ws, case, random.Random(0)).run()
        assert not outcome.failures, report(0, 0, case, outcome)


@SETTINGS
@given(spec=st.sampled_from(SPECS), data=st.data(), name=st.text(st.characters(codec="utf-8"), max_size=20))
def test_an_unknown_key_is_named_in_its_problem_line(spec, data, name):
    with workspace(spec) as ws:
        parsed = tomllib.loads(ws.main.read_text(encoding="utf-8"))
        choices = [(p, t) for p, t in tables(parsed) if "args" not in p] + [(("seeds",), None)]
        path, table = data.draw(st.sampled_from(choices), label="table")
        if table is None:
            table = parsed.setdefault("seeds", {})
        assume(name not in table and name not in BASE_STREAMS and (path or name != "extends"))
        # Seed names are checked by a rule that runs once the fields are valid; base.toml alone is not.
        assume(not (path == ("seeds",) and spec.name == "base.toml"))
        table[name] = {"\x00": 1}  # wrong wherever it lands, even under a known name
        case = Case("unknown_key", f"{path}.{name!r}", dumps(parsed).encode())
        outcome = Trial(ws, case, random.Random(0)).run()
        assert not outcome.failures, report(0, 0, case, outcome)
        # Seed streams are named by their dotted path, so under [seeds] the table flattens.
        shown = key_path_text(("seeds", f"{name}.\x00") if path == ("seeds",) else (*path, name))
        assert outcome.exit == 2 and shown in outcome.outputs[0], f"no problem line names {shown}: {outcome.outputs}"


def test_fuzzer_command_line_prints_the_summary(capsys):
    code = main(["--count", "12", "--seed", "3"])
    out = capsys.readouterr().out
    number = r"(\d+)"
    match = re.search(SUMMARY.format(n=12, a=number, r=number, t=number, f=number), out)
    assert match, out
    accepted_, rejected_, tracebacks, created = map(int, match.groups())
    assert accepted_ + rejected_ <= 12
    assert (code != 0) == (tracebacks > 0 or created > 0 or "other broken promises" in out), out
