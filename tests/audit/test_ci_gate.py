"""The committed CI gate: its lockfile verifies, and its scripts call the real commands."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import PurePosixPath, PureWindowsPath

import pytest

from tests.conftest import EXAMPLES, ROOT
from tests.runtime.runs import exp

CI = EXAMPLES / "ci"


def test_committed_lockfile_verifies(tmp_path):
    report = tmp_path / "report.json"
    result = exp("audit", "--lock", str(CI / "exp.lock"), "--allow-import", "lab", "--json", str(report), timeout=900)
    assert result.returncode == 0, result.stderr
    checks = json.loads(report.read_text())["checks"]
    assert {c["name"] for c in checks} == {"digits-mlp", "char-transformer", "custom-sines"}
    # A skipped check proves nothing: every entry must reproduce bitwise. Install with
    # examples/ci/exp.constraints.txt (as .ci/run does) to be in the locked environment class.
    assert [(c["status"], c["kind"]) for c in checks] == [("passed", "reproduced")] * 3, result.stderr


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_lockfile_holds_no_machine_paths():
    text = (CI / "exp.lock").read_text()
    assert str(ROOT.parent) not in text and "/tmp/" not in text
    absolute = [s for s in _strings(json.loads(text)) if PurePosixPath(s).is_absolute() or PureWindowsPath(s).drive]
    assert absolute == []


def test_committed_constraints_pin_the_lock_and_the_gates_install_with_them():
    lock = json.loads((CI / "exp.lock").read_text())
    printed = exp("lock", "--constraints", str(CI / "exp.lock"))
    assert printed.returncode == 0, printed.stderr
    assert (CI / "exp.constraints.txt").read_text() == printed.stdout, "re-record: exp lock ... -o examples/ci/exp.lock"
    pins = {line.split("==")[0]: line.split("==")[1] for line in printed.stdout.splitlines() if "==" in line}
    assert all(pins == {**pins, **e["environment"]["packages"]} for e in lock["entries"])
    install = "-c examples/ci/exp.constraints.txt"
    for script in (CI / "audit.sh", CI / "github-workflow.yml", ROOT / ".ci" / "run"):
        assert install in script.read_text(), f"{script.name} installs without the lock's constraints"


@pytest.mark.slow
def test_plain_shell_gate_installs_and_passes(tmp_path):
    """The script any CI can call: a fresh venv, a wheel install, the lockfile audit."""
    report = tmp_path / "report.xml"
    result = subprocess.run(
        ["bash", str(CI / "audit.sh")],
        env={**os.environ, "REPORT": str(report)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cases = ET.parse(report).getroot().findall(".//testcase")
    assert len(cases) == 3 and all(c.find("failure") is None and c.find("skipped") is None for c in cases)
