"""A damaged record never blocks a resume: the line is skipped and named, env.json rewritten.

Each case damages a copy of the committed stopped run (tests/fixtures/rundirs),
resumes it with `exp run`, and checks that the run finishes on the bits of an
uninterrupted run, that what was skipped or rewritten is recorded, and that
`exp runs` says what `exp run` does.
"""

from __future__ import annotations

import json

import pytest

from tests.runtime.runs import exp
from tests.runtime.upgrade_fixture import ONE_DEVICE, assert_bitwise, copy_fixture, events, finish, fresh_hash, run_spec


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return fresh_hash(tmp_path_factory.mktemp("fresh"))


def _insert(path, number, line):
    """Put `line` (bytes, with its newline) so that it becomes line `number` of `path`."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[: number - 1], line, *lines[number - 1 :]]))


def _status(run_dir):
    done = exp("runs", str(run_dir), "--json", env=ONE_DEVICE)
    assert done.returncode == 0, done.stderr
    (status,) = json.loads(done.stdout)["runs"]
    return status["status"], status["step"]


@pytest.mark.parametrize(
    "name, line",
    [("events.jsonl", b"\n"), ("events.jsonl", b"garbage\n"), ("metrics.jsonl", b"\x00garbage{\n")],
    ids=["events-empty-line", "events-garbage-line", "metrics-garbage-line"],
)
def test_a_damaged_line_is_skipped_named_and_the_run_resumes_bitwise(tmp_path, fresh, name, line):
    folder = copy_fixture(tmp_path)
    run = folder / "run"
    _insert(run / name, 2, line)
    assert _status(run) == ("stopped", 3)  # resumable, and `exp run` does resume it
    result = finish(folder)
    assert (result["outcome"], result["step"]) == ("finished", 6)
    (damaged,) = [e for e in events(run) if e["event"] == "records_damaged"]
    assert damaged["files"] == {name: {"count": 1, "lines": [2], "reason": damaged["files"][name]["reason"]}}
    assert "not JSON" in damaged["files"][name]["reason"] or "NUL" in damaged["files"][name]["reason"]
    assert (run / name).read_bytes().splitlines(keepends=True)[1] == line  # skipped, never rewritten
    assert _status(run) == ("done", 6)
    assert_bitwise(run, result["full_hash"], fresh)


def test_damage_is_named_once_across_attempts(tmp_path):
    folder = copy_fixture(tmp_path)
    run = folder / "run"
    _insert(run / "events.jsonl", 3, b"garbage\n")
    assert finish(folder, "run", "--stop-at", "4")["outcome"] == "stopped"
    assert finish(folder)["outcome"] == "finished"
    named = [e["files"] for e in events(run) if e["event"] == "records_damaged"]
    assert named == [{"events.jsonl": {"count": 1, "lines": [3], "reason": named[0]["events.jsonl"]["reason"]}}]


def test_a_truncated_env_json_is_rewritten_and_the_run_resumes_bitwise(tmp_path, fresh):
    folder = copy_fixture(tmp_path)
    run = folder / "run"
    whole = (run / "env.json").read_bytes()
    (run / "env.json").write_bytes(whole[: len(whole) // 2])
    assert _status(run) == ("stopped", 3)
    result = finish(folder)
    assert (result["outcome"], result["step"]) == ("finished", 6)
    (change,) = [e for e in events(run) if e["event"] == "environment_change"]
    assert change["before"] is None and change["unreadable"].startswith("env.json: not valid JSON")
    assert json.loads((run / "env.json").read_text())["class"] == change["after"]
    assert _status(run) == ("done", 6)
    assert_bitwise(run, result["full_hash"], fresh)


def test_an_error_points_at_events_jsonl_only_when_it_is_recorded_there(tmp_path):
    folder = copy_fixture(tmp_path)
    run = folder / "run"
    (run / "env.json").unlink()
    (run / "env.json").mkdir()  # cannot be replaced: the attempt fails before it records anything
    done = run_spec(folder, "--run-dir", "run")
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "env.json" in line and "details in" not in line
    assert not [e for e in events(run) if e["event"] == "error"]
