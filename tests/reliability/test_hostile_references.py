"""Hostile specs that reach outside themselves: `extends` and custom targets.

A spec names other files two ways: `extends` loads another spec, and a
`custom` target names a Python module. One hand-written case per way an
`extends` can go wrong (itself, a cycle, missing, too deep, leaving the spec's
folder, not a path, refused by the OS), each pinned to its problem line, and a
check that a planted module's code never runs without `--allow-import`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from expspec.spec.errors import show_value
from tests.helpers import MINIMAL
from tests.reliability import hostile_helpers
from tests.reliability.fuzz_workspace import EVIL_MODULE, EVIL_PACKAGE
from tests.reliability.hostile_helpers import custom_spec, invoke, markers, plant, refused, validate

cwd = hostile_helpers.cwd
"""The shared `cwd` fixture, bound here so pytest finds it (importing the name would trip ruff's F811)."""


# -- extends -------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The spec's folder, with a complete spec just outside it that an escaping `extends` would load."""
    inside = tmp_path / "specs"
    inside.mkdir()
    (tmp_path / "outside.toml").write_text(MINIMAL)
    return inside


def test_extends_itself(tmp_path, cwd, folder):
    spec = folder / "spec.toml"
    spec.write_text('extends = "spec.toml"\n' + MINIMAL)
    (line,) = validate(tmp_path, cwd, spec)
    assert line.startswith(f"{spec}:1: extends: cycle: spec.toml -> spec.toml")


def test_extends_cycle_through_another_file(tmp_path, cwd, folder):
    spec = folder / "spec.toml"
    spec.write_text('extends = "b.toml"\n' + MINIMAL)
    (folder / "b.toml").write_text('extends = "spec.toml"\n')
    (line,) = validate(tmp_path, cwd, spec)
    assert line.startswith(f"{folder / 'b.toml'}:1: extends: cycle: spec.toml -> b.toml -> spec.toml")


def test_extends_a_missing_file(tmp_path, cwd, folder):
    spec = folder / "spec.toml"
    spec.write_text('extends = "nope.toml"\n' + MINIMAL)
    assert validate(tmp_path, cwd, spec) == [f'{spec}:1: extends: no such file (got "nope.toml")']


def test_extends_chain_longer_than_the_loader_follows(tmp_path, cwd, folder):
    spec = folder / "spec.toml"
    spec.write_text('extends = "c0.toml"\n' + MINIMAL)
    for i in range(20):
        (folder / f"c{i}.toml").write_text(f'extends = "c{i + 1}.toml"\n')
    (folder / "c20.toml").write_text("")
    (line,) = validate(tmp_path, cwd, spec)
    assert re.match(rf"{re.escape(str(folder))}/c\d+\.toml:1: extends: more than 16 files deep", line), line


@pytest.mark.parametrize("how", ["parent", "absolute", "sub/../..", "symlink", "symlinked folder", "inner file"])
def test_extends_may_not_leave_the_folder(tmp_path, cwd, folder, how):
    spec = folder / "spec.toml"
    value = {
        "parent": "../outside.toml",
        "absolute": str(tmp_path / "outside.toml"),
        "sub/../..": "sub/../../outside.toml",
        "symlink": "link.toml",
        "symlinked folder": "up/outside.toml",
        "inner file": "sub/inner.toml",
    }[how]
    (folder / "link.toml").symlink_to("../outside.toml")
    (folder / "up").symlink_to("..")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.toml").write_text('extends = "../../outside.toml"\n')
    spec.write_text(f'extends = "{value}"\n' + MINIMAL.replace('name = "t"\n', ""))
    (line,) = validate(tmp_path, cwd, spec)
    where = folder / "sub" / "inner.toml" if how == "inner file" else spec
    got = "../../outside.toml" if how == "inner file" else value
    assert line == (
        f"{where}:1: extends: must name a file inside specs/, the folder of the spec being loaded (got {show_value(got)})"
    )


@pytest.mark.parametrize("value,shown", [("3", "3"), ('["a.toml"]', '["a.toml"]'), ('""', '""'), ("true", "true")])
def test_extends_that_is_not_a_path(tmp_path, cwd, folder, value, shown):
    spec = folder / "spec.toml"
    spec.write_text(f"extends = {value}\n" + MINIMAL)
    assert validate(tmp_path, cwd, spec) == [
        f"{spec}:1: extends: must be the relative path of another spec file (got {shown})"
    ]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("base.toml\\u0000", id="NUL"),
        pytest.param("a" * 300, id="name-too-long"),
        pytest.param("a/" * 3000 + "x", id="path-too-long"),
    ],
)
def test_extends_paths_the_os_refuses(tmp_path, cwd, folder, value):
    """Product bug while this fails: `Path.resolve()`/`is_file()` raise ValueError/OSError out of the loader."""
    spec = folder / "spec.toml"
    spec.write_text(f'extends = "{value}"\n' + MINIMAL)
    (line,) = validate(tmp_path, cwd, spec)
    assert line.startswith(f"{spec}:1: extends: ")


# -- custom targets ----------------------------------------------------------------


@pytest.mark.parametrize("target", [f"{EVIL_MODULE}:make", f"{EVIL_PACKAGE}:make", f"{EVIL_PACKAGE}.sub:make"])
@pytest.mark.parametrize("allow", [[], ["exp_fuzz_evi"], [f"{EVIL_MODULE}s"], [f"{EVIL_MODULE}.x"], ["EXP_FUZZ_EVIL"]])
def test_custom_code_never_runs_without_allow_import(tmp_path, cwd, target, allow):
    folder = tmp_path / "specs"
    folder.mkdir()
    plant(folder, tmp_path)
    spec = custom_spec(folder, target)
    flags = [a for prefix in allow for a in ("--allow-import", prefix)]
    before = set(sys.modules)
    result = invoke(tmp_path, cwd, "validate", spec, *flags)
    assert result.exit_code == 0 and "located, not imported" in result.output, result.output
    assert invoke(tmp_path, cwd, "plan", spec, "--json").exit_code == 0
    root = target.split(".")[0].split(":")[0]
    assert refused(tmp_path, cwd, "run", spec, "--run-dir", cwd / "run", *flags) == [
        f"{spec}: model.target: importing '{target}' runs its code; allow it with --allow-import {root}"
    ]
    assert markers(tmp_path) == [] and not any(m.startswith("exp_fuzz_") for m in set(sys.modules) - before)
