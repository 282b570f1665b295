"""Custom targets: located without running, imported only when allowed."""

from __future__ import annotations

import sys

import pytest

from expspec.compiler import plan_spec
from expspec.spec import ImportNotAllowed, import_target, target_source
from expspec.spec.targets import is_allowed
from tests.conftest import run_exp

MODULE = """\
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("ran")

def build(rngs, width=4):
    return ("model", width)

NOT_CALLABLE = 3
"""

SPEC = """\
name = "custom"
[model]
kind = "custom"
target = "mylab_models.nets:build"
args = {{ width = 8 }}
[data]
kind = "sklearn_digits"
[train]
steps = 3
"""


@pytest.fixture
def lab(tmp_path):
    package = tmp_path / "mylab_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(MODULE)
    (tmp_path / "spec.toml").write_text(SPEC.format())
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("mylab_models")]:
        del sys.modules[name]


@pytest.mark.parametrize(
    "target,prefixes,allowed",
    [
        ("mylab.models:f", ["mylab"], True),
        ("mylab:f", ["mylab"], True),
        ("mylabs.models:f", ["mylab"], False),
        ("mylab.models:f", ["mylab.models"], True),
        ("mylab.models:f", ["mylab.other"], False),
        ("mylab.models:f", [], False),
    ],
)
def test_prefixes_match_whole_components(target, prefixes, allowed):
    assert is_allowed(target, prefixes) is allowed


def test_locating_a_target_runs_nothing(lab):
    assert target_source("mylab_models.nets:build", [lab]) == lab / "mylab_models" / "nets.py"
    assert not (lab / "mylab_models" / "IMPORTED").exists()
    assert "mylab_models" not in sys.modules


def test_import_needs_an_allowance(lab):
    with pytest.raises(ImportNotAllowed, match="--allow-import mylab_models"):
        import_target("mylab_models.nets:build", [], [lab])
    assert not (lab / "mylab_models" / "IMPORTED").exists()
    build = import_target("mylab_models.nets:build", ["mylab_models"], [lab])
    assert build(None) == ("model", 4)
    assert (lab / "mylab_models" / "IMPORTED").exists()


def test_plan_fingerprints_the_target_source_without_importing(lab):
    before = plan_spec(lab / "spec.toml")
    assert not (lab / "mylab_models" / "IMPORTED").exists()
    assert set(before.fingerprints.sources) == {"mylab_models", "mylab_models.nets"}
    assert "custom.model" in before.seeds
    nets = lab / "mylab_models" / "nets.py"
    nets.write_text(nets.read_text() + "\n# a change to the model code\n")
    after = plan_spec(lab / "spec.toml")
    assert after.fingerprints.trajectory != before.fingerprints.trajectory


def test_missing_target_module_is_a_spec_error(lab):
    (lab / "spec.toml").write_text(SPEC.format().replace("mylab_models.nets", "mylab_models.gone"))
    result = run_exp("plan", str(lab / "spec.toml"), cwd=lab)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"{lab / 'spec.toml'}: model.target: module 'mylab_models.gone' not found (got \"mylab_models.gone:build\")"
    )


def test_validate_imports_only_with_the_flag(lab):
    plain = run_exp("validate", "spec.toml", cwd=lab)
    assert plain.returncode == 0 and "not imported (--allow-import mylab_models" in plain.stderr
    assert not (lab / "mylab_models" / "IMPORTED").exists()
    allowed = run_exp("validate", "spec.toml", "--allow-import", "mylab_models", cwd=lab)
    assert allowed.returncode == 0, allowed.stderr
    assert (lab / "mylab_models" / "IMPORTED").exists()


def test_validate_refuses_a_target_that_is_not_callable(lab):
    (lab / "spec.toml").write_text(SPEC.format().replace(":build", ":NOT_CALLABLE"))
    result = run_exp("validate", "spec.toml", "--allow-import", "mylab_models", cwd=lab)
    assert result.returncode == 2
    assert "model.target: is not callable" in result.stderr and "Traceback" not in result.stderr
