"""A refused import reads the same wherever it is refused, and is worded in one place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from expspec.cli.runnable import import_refusals
from expspec.compiler import plan_spec
from expspec.spec import ImportNotAllowed, import_target
from tests.conftest import EXAMPLES, ROOT

TARGET = "mylab_refused.models:build"


def test_the_library_and_the_cli_refuse_an_import_in_the_same_words(tmp_path):
    (tmp_path / "mylab_refused").mkdir()
    (tmp_path / "mylab_refused" / "__init__.py").write_text("")
    (tmp_path / "mylab_refused" / "models.py").write_text("raise SystemExit('must not run')\n")
    for name in ("base.toml", "digits_mlp.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    spec = tmp_path / "spec.toml"
    spec.write_text(f'extends = "digits_mlp.toml"\n[model]\nkind = "custom"\ntarget = "{TARGET}"\n')
    plan = plan_spec(spec, [])
    [cli] = import_refusals(spec, plan, ["mylab"])
    with pytest.raises(ImportNotAllowed) as library:
        import_target(TARGET, ["mylab"], [tmp_path])
    assert str(library.value) == cli.message
    assert cli.message == f"importing '{TARGET}' runs its code; allow it with --allow-import mylab_refused"


def test_the_refusal_is_worded_once():
    sources = [p for top in ("spec", "compiler", "runtime", "audit", "expspec") for p in (ROOT / top).rglob("*.py")]
    wording = [str(p.relative_to(ROOT)) for p in sources if "allow it with --allow-import" in p.read_text()]
    assert wording == [str(Path("spec") / "targets.py")]
