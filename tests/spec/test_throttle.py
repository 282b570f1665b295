"""`[throttle]`: a count or "auto", and a memory budget written with a unit."""

from __future__ import annotations

import pytest

from expspec.spec import SpecError, load_spec
from expspec.spec.sizes import MAX_BYTES, parse_bytes
from tests.conftest import run_exp
from tests.helpers import MINIMAL


def throttle(write_spec, body: str):
    return write_spec(MINIMAL + "\n[throttle]\n" + body + "\n")


@pytest.mark.parametrize(
    "text,expected",
    [
        (1, 1),
        (536870912, 2**29),
        ("512MiB", 512 * 2**20),
        ("8GiB", 8 * 2**30),
        ("2GB", 2 * 10**9),
        ("500MB", 500 * 10**6),
        ("64kB", 64_000),
        ("64KB", 64_000),
        ("3KiB", 3072),
        ("1.5GiB", 3 * 2**29),
        ("1.5 GB", 1_500_000_000),
        ("7B", 7),
        ("1TiB", 2**40),
    ],
)
def test_sizes_parse_to_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text,message",
    [
        ("8G", "must be bytes as a positive integer, or a string with a unit"),
        ("8gib", "must be bytes as a positive integer"),
        ("8 GiB ", "must be bytes as a positive integer"),
        ("8  GiB", "must be bytes as a positive integer"),
        ("1024", "must be bytes as a positive integer"),
        ("-1GiB", "must be bytes as a positive integer"),
        ("1e9B", "must be bytes as a positive integer"),
        (".5GiB", "must be bytes as a positive integer"),
        ("", "must be bytes as a positive integer"),
        ("0MiB", "must be more than 0 bytes"),
        (0, "must be more than 0 bytes"),
        (-5, "must be more than 0 bytes"),
        ("1.5B", "is not a whole number of bytes"),
        ("1.0001KiB", "is not a whole number of bytes"),
        ("2000000TiB", "must be at most"),
        (MAX_BYTES + 1, "must be at most"),
        (True, "must be bytes as a positive integer"),
        (1.5e9, "must be bytes as a positive integer"),
    ],
)
def test_bad_sizes_are_refused(text, message):
    with pytest.raises(ValueError, match="^" + message):
        parse_bytes(text)


@pytest.mark.parametrize(
    "body,inflight,budget",
    [
        ("", 2, None),
        ("max_inflight = 5", 5, None),
        ('max_inflight = "auto"', "auto", None),
        ('max_inflight = "auto"\nmemory_budget = "512MiB"', "auto", "512MiB"),
        ('max_inflight = "auto"\nmemory_budget = 1048576', "auto", 1048576),
    ],
)
def test_throttle_loads(write_spec, body, inflight, budget):
    spec = load_spec(throttle(write_spec, body)).experiment.throttle
    assert (spec.max_inflight, spec.memory_budget) == (inflight, budget)


@pytest.mark.parametrize(
    "body,expected",
    [
        ('max_inflight = "fast"', 'throttle.max_inflight: must be an integer from 1 to 1024, or "auto" (got "fast")'),
        ('max_inflight = "AUTO"', 'throttle.max_inflight: must be an integer from 1 to 1024, or "auto" (got "AUTO")'),
        ("max_inflight = 0", 'throttle.max_inflight: must be an integer from 1 to 1024, or "auto" (got 0)'),
        ("max_inflight = 1025", 'throttle.max_inflight: must be an integer from 1 to 1024, or "auto" (got 1025)'),
        ("max_inflight = true", 'throttle.max_inflight: must be an integer from 1 to 1024, or "auto" (got true)'),
        (
            'max_inflight = "auto"\nmemory_budget = "8G"',
            "throttle.memory_budget: must be bytes as a positive integer, or a string with a unit "
            'such as "512MiB", "8GiB" or "2GB" (got "8G")',
        ),
        ('max_inflight = "auto"\nmemory_budget = -1', "throttle.memory_budget: must be more than 0 bytes (got -1)"),
        (
            'max_inflight = "auto"\nmemory_budget = "1.5B"',
            'throttle.memory_budget: is not a whole number of bytes (got "1.5B")',
        ),
        (
            'max_inflight = 4\nmemory_budget = "8GiB"',
            'throttle.memory_budget: is only used with max_inflight = "auto" (max_inflight is 4); '
            'remove it or set throttle.max_inflight = "auto" (got "8GiB")',
        ),
        (
            'memory_budget = "8GiB"',
            'throttle.memory_budget: is only used with max_inflight = "auto" (max_inflight is 2); '
            'remove it or set throttle.max_inflight = "auto" (got "8GiB")',
        ),
    ],
)
def test_bad_throttles_give_one_line_naming_the_key(write_spec, body, expected):
    spec = throttle(write_spec, body)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    (line,) = [str(p) for p in caught.value.problems]
    assert line.startswith(f"{spec}:") and line.endswith(expected), line


@pytest.mark.parametrize(
    "body,key",
    [
        ('max_inflight = 3\nmemory_budget = "1GiB"', "14: throttle.memory_budget: is only used with"),
        ('max_inflight = "auto"\nmemory_budget = "lots"', "14: throttle.memory_budget: must be bytes"),
        ('max_inflight = "soon"', "13: throttle.max_inflight: must be an integer"),
    ],
)
def test_cli_refuses_bad_throttles_with_exit_2(write_spec, body, key):
    spec = throttle(write_spec, body)
    for command in ("validate", "plan"):
        result = run_exp(command, str(spec))
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"{spec}:{key}"), line
        assert "Traceback" not in result.stderr


def test_cli_plan_states_the_auto_throttle(write_spec):
    spec = throttle(write_spec, 'max_inflight = "auto"\nmemory_budget = "2GiB"')
    result = run_exp("plan", str(spec))
    assert result.returncode == 0, result.stderr
    assert "auto: steps in flight chosen from the compiled step's memory analysis, budget 2.0 GiB" in result.stderr
    fixed = run_exp("plan", str(throttle(write_spec, "max_inflight = 3")))
    assert "at most 3 steps in flight" in fixed.stderr
