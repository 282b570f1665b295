"""Custom code is fingerprinted whole: the target's module and every local module it imports."""

from __future__ import annotations

import json
import sys
import time

import pytest

from expspec.compiler import plan_spec
from tests.conftest import EXAMPLES, run_exp

SPEC = """\
name = "closure"
[model]
kind = "custom"
target = "pkg.model:build"
[data]
kind = "sklearn_digits"
[train]
steps = 3
"""

NETS = """\
def activation(x):
    return max(x, 0.0)  # relu
"""

IMPORTS = {
    "relative": "from .nets import activation\n",
    "absolute": "from pkg.nets import activation\n",
    "aliased": "import pkg.nets as n\nactivation = n.activation\n",
    "submodule": "from pkg import nets\nactivation = nets.activation\n",
    "package_relative": "from . import nets\nactivation = nets.activation\n",
    "in_function": "def activation(x):\n    from pkg.nets import activation as f\n    return f(x)\n",
}

MODEL = """\
{imports}
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("ran")


def build(rngs):
    return activation
"""


def _package(root, imports: str, nets: str = NETS) -> None:
    package = root / "pkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text('"""A lab package."""\n')
    (package / "model.py").write_text(MODEL.format(imports=imports))
    (package / "nets.py").write_text(nets)
    (package / "unused.py").write_text("X = 1\n")
    (root / "spec.toml").write_text(SPEC)


@pytest.fixture
def folder(tmp_path):
    yield tmp_path
    for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[name]


@pytest.mark.parametrize("style", list(IMPORTS))
def test_editing_an_imported_helper_changes_the_trajectory(folder, style):
    _package(folder, IMPORTS[style])
    before = plan_spec(folder / "spec.toml")
    assert set(before.fingerprints.sources) == {"pkg", "pkg.model", "pkg.nets"}
    nets = folder / "pkg" / "nets.py"
    nets.write_text(nets.read_text().replace("max(x, 0.0)  # relu", "__import__('math').tanh(x)"))
    after = plan_spec(folder / "spec.toml")
    assert after.fingerprints.trajectory != before.fingerprints.trajectory
    changed = {k for k in after.fingerprints.sources if after.fingerprints.sources[k] != before.fingerprints.sources[k]}
    assert changed == {"pkg.nets"}
    assert not (folder / "pkg" / "IMPORTED").exists() and "pkg" not in sys.modules  # nothing ran


def test_files_nothing_imports_are_not_fingerprinted(folder):
    _package(folder, IMPORTS["relative"])
    before = plan_spec(folder / "spec.toml")
    (folder / "pkg" / "unused.py").write_text("X = 2\n")
    (folder / "notes.py").write_text("print('not part of the model')\n")
    assert plan_spec(folder / "spec.toml").fingerprints == before.fingerprints


def test_stdlib_and_installed_distributions_are_named_not_hashed(folder):
    imports = "import json\nimport numpy as np\nfrom os import path\nfrom .nets import activation\n"
    _package(folder, imports, nets="import numpy.linalg\nimport collections\n" + NETS)
    plan = plan_spec(folder / "spec.toml")
    assert set(plan.fingerprints.sources) == {"pkg", "pkg.model", "pkg.nets"}
    assert plan.distributions == ("numpy",)
    # Which distribution provides numpy is the machine's business: it stays out of the fingerprints.
    assert "numpy" not in json.dumps(plan.fingerprints.model_dump())


def test_cycles_and_unresolvable_imports_end_the_walk(folder):
    cycle = "from . import model\ntry:\n    import no_such_optional_dependency\nexcept ImportError:\n    pass\n"
    _package(folder, "from .nets import activation\nfrom .. import beyond_the_top\n", nets=cycle + NETS)
    (folder / "pkg" / "__init__.py").write_text("from .model import build\n")
    t0 = time.perf_counter()
    plan = plan_spec(folder / "spec.toml")
    assert time.perf_counter() - t0 < 2
    assert set(plan.fingerprints.sources) == {"pkg", "pkg.model", "pkg.nets"}


def test_a_target_without_a_package(folder):
    (folder / "spec.toml").write_text(SPEC.replace("pkg.model", "flat"))
    (folder / "flat.py").write_text("from helper import activation\n\ndef build(rngs):\n    return activation\n")
    (folder / "helper.py").write_text(NETS)
    plan = plan_spec(folder / "spec.toml")
    assert set(plan.fingerprints.sources) == {"flat", "helper"}


def test_specs_without_custom_code_have_no_sources():
    plan = plan_spec(EXAMPLES / "digits_mlp.toml")
    assert plan.fingerprints.sources == {} and plan.distributions == ()


def test_diff_names_the_edited_helper_module(folder):
    _package(folder, IMPORTS["relative"])
    recorded = run_exp("plan", "spec.toml", "--json", cwd=folder)
    assert recorded.returncode == 0, recorded.stderr
    (folder / "plan.json").write_text(recorded.stdout)
    nets = folder / "pkg" / "nets.py"
    nets.write_text(nets.read_text() + "\n# edited\n")
    result = run_exp("diff", "plan.json", "spec.toml", "--json", cwd=folder)
    assert result.returncode == 1, result.stderr
    [change] = json.loads(result.stdout)["changes"]
    assert change["key"] == "plan.sources.pkg.nets" and change["class"] == "trajectory"


def test_a_local_module_named_like_the_standard_library_is_hashed(tmp_path):
    """The standard library is recognised by name, never by reading its files; a file of
    such a name in the spec's own folder is the user's code and is fingerprinted."""
    from expspec.spec.closure import source_closure

    (tmp_path / "statistics.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    (tmp_path / "lab_model.py").write_text("import json\nimport statistics\n")
    closure = source_closure(["lab_model"], [tmp_path])
    assert set(closure.sources) == {"lab_model", "statistics"}
    assert "json" not in closure.sources and not closure.distributions
