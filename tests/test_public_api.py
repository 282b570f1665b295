"""The public surface of each package: what it names resolves, and naming it costs no JAX.

`exp`, `expspec.runtime` and `expspec.audit` re-export their entry points lazily, so
a reader sees the public names in one place while `exp --help` stays fast.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("expspec", "expspec.runtime", "expspec.audit")
SOURCES = ("spec", "compiler", "runtime", "audit", "expspec")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert names, f"{package} declares no public names (__all__)"
    missing = [name for name in names if getattr(module, name, None) is None]
    assert not missing, f"{package}.__all__ names what it cannot give: {missing}"
    # Importing a submodule sets it as the package's attribute, hiding an export of that name.
    shadowed = sorted(set(names) & {info.name for info in pkgutil.iter_modules(module.__path__)})
    assert not shadowed, f"{package}: these exports are hidden by submodules of the same name: {shadowed}"
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_importing_the_packages_imports_no_jax():
    code = f"import sys\nfor p in {PACKAGES!r}: __import__(p)\nprint('jax' in sys.modules, 'flax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_no_module_imports_a_private_name():
    """A `_name` is its module's own business; one another module needs is public."""
    found = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                    found += [f"{path.relative_to(ROOT)}: {name} from {node.module}" for name in private]
    assert found == []


def _kinds(annotated: object) -> set[str]:
    """The `kind` tags of a discriminated union `Annotated[A | B, Field(discriminator="kind")]`."""
    members = typing.get_args(typing.get_args(annotated)[0])
    return {kind for m in members for kind in typing.get_args(m.model_fields["kind"].annotation)}


def test_data_and_models_share_one_registry_that_knows_every_kind():
    from expspec.runtime.data import DATA_BUILDERS
    from expspec.runtime.models import MODEL_BUILDERS
    from expspec.runtime.registry import Registry
    from expspec.spec.data import DataSpec
    from expspec.spec.model import ModelSpec

    assert isinstance(DATA_BUILDERS, Registry) and isinstance(MODEL_BUILDERS, Registry)
    assert set(DATA_BUILDERS) == _kinds(DataSpec)
    assert set(MODEL_BUILDERS) == _kinds(ModelSpec)
