"""The wheel maps the top-level stage folders to `expspec.*` subpackages.

Run from outside the repository: inside it, the local `expspec/` folder would
shadow the installed package and hide a broken mapping.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

STAGES = {
    "expspec": "expspec",
    "spec": "expspec.spec",
    "compiler": "expspec.compiler",
    "runtime": "expspec.runtime",
    "audit": "expspec.audit",
}
SUBPACKAGES = tuple(
    sorted(
        ".".join([STAGES[init.relative_to(ROOT).parts[0]], *init.relative_to(ROOT).parts[1:-1]])
        for folder in STAGES
        for init in (ROOT / folder).rglob("__init__.py")
    )
)
"""Every package folder in the source tree: a wheel missing one fails here."""


def test_wheel_installs_every_subpackage(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("expspec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "expspec/spec/experiment.py" in names and "expspec/compiler/plan.py" in names
    assert not any(name.startswith(("tests/", "spec/", "compiler/")) for name in names)

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    code = (
        "import importlib, sys\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    print(name, module.__file__)\n"
        "from expspec.compiler import plan_spec\n"
        f"print(plan_spec({str(ROOT / 'examples' / 'digits_mlp.toml')!r}).fingerprints.trajectory)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for line in lines[: len(SUBPACKAGES)]:
        name, file = line.split()
        assert Path(file).is_relative_to(target), f"{name} imported from {file}, not the wheel"
    assert len(lines[-1]) == 64
