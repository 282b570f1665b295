"""`exp audit --lock`: the five verdicts, each with its own line, and only one says "regression".

A lock is recorded once on a tiny character model of a small text file; each
test copies it, changes one thing (the data, a custom module, the recorded
environment, a trajectory field, a recorded hash) and reads the verdict.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.runtime.runs import exp

TEXT_SPEC = """\
name = "tiny-text"

[model]
kind = "transformer"
layers = 1
d_model = 16
heads = 2
d_ff = 32
max_len = 16

[data]
kind = "text_chars"
path = "corpus.txt"
seq_len = 16
batch_size = 4

[optimizer]
kind = "adam"
learning_rate = 0.001

[train]
steps = 4
eval_every = 0
"""

CODE_SPEC = """\
name = "tiny-code"

[model]
kind = "custom"
target = "verdict_lab.nets:make_linear"

[data]
kind = "sklearn_digits"
batch_size = 16

[optimizer]
kind = "sgd"
learning_rate = 0.1

[train]
steps = 3
eval_every = 0
"""

NETS = '''\
"""A linear classifier for the lock's code-input test."""

from flax import nnx


def make_linear(rngs: nnx.Rngs, inputs: int = 64, classes: int = 10) -> nnx.Module:
    return nnx.Linear(inputs, classes, rngs=rngs)
'''

CORPUS = b"the quick brown fox jumps over the lazy dog; " * 120


def audit(folder: Path, *args: str) -> tuple[int, list[dict], str]:
    """`exp audit --lock exp.lock` in `folder`: exit code, the lock checks, stderr."""
    report = folder / "report.json"
    result = exp("audit", "--lock", "exp.lock", *args, "--json", str(report), cwd=folder, timeout=600)
    checks = json.loads(report.read_text())["checks"] if report.exists() else []
    return result.returncode, checks, result.stderr


def one_line(text: str) -> str:
    """Rich folds long lines on stderr; the words of one line are what a reader sees."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def text_lock(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("text-lock")
    (folder / "tiny.toml").write_text(TEXT_SPEC, encoding="utf-8")
    (folder / "corpus.txt").write_bytes(CORPUS)
    recorded = exp("lock", "tiny.toml", "--steps", "4", "-o", "exp.lock", cwd=folder, timeout=600)
    assert recorded.returncode == 0, recorded.stderr
    return folder


@pytest.fixture
def locked(text_lock: Path, tmp_path: Path) -> Path:
    """A private copy of the recorded lock and its spec, for one test to change."""
    folder = tmp_path / "lock"
    shutil.copytree(text_lock, folder)
    return folder


def edit_entry(folder: Path, change) -> None:
    path = folder / "exp.lock"
    document = json.loads(path.read_text())
    change(document["entries"][0])
    path.write_text(json.dumps(document, indent=2))


def test_lock_records_the_inputs_the_bits_depend_on(text_lock):
    entry = json.loads((text_lock / "exp.lock").read_text())["entries"][0]
    assert entry["inputs"] == {"data": hashlib.sha256(CORPUS).hexdigest()}


def test_untouched_lock_reproduces(locked):
    code, checks, stderr = audit(locked)
    assert code == 0, stderr
    [check] = checks
    assert (check["status"], check["kind"]) == ("passed", "reproduced")
    assert check["compared_steps"] and "regression" not in stderr


def test_edited_data_is_an_input_change_naming_both_fingerprints(locked):
    (locked / "corpus.txt").write_bytes(CORPUS.replace(b"lazy", b"busy"))
    code, checks, stderr = audit(locked)
    assert code == 1
    [check] = checks
    assert (check["status"], check["kind"]) == ("failed", "input_changed")
    before, after = hashlib.sha256(CORPUS).hexdigest(), hashlib.sha256(CORPUS.replace(b"lazy", b"busy")).hexdigest()
    assert check["details"]["inputs"] == {"data": [before, after]}
    assert "data" in check["summary"] and before in one_line(stderr) and after in one_line(stderr)
    assert "regression" not in stderr.lower() and "regression" not in json.dumps(check).lower()
    assert "exp lock" in one_line(stderr), "a changed input asks for the lock to be re-recorded"


def test_another_environment_fails_naming_the_package_and_the_install_command(locked):
    edit_entry(locked, lambda e: e["environment"]["packages"].update(numpy="0.0.1"))
    code, checks, stderr = audit(locked)
    assert code == 1
    [check] = checks
    assert (check["status"], check["kind"]) == ("failed", "environment_changed")
    now = check["environment"]["packages.numpy"]
    assert now[0] == "0.0.1" and now[1] not in (None, "0.0.1")
    text = one_line(stderr)
    assert "numpy" in check["summary"] and "0.0.1" in text and now[1] in text
    assert "pip install -c exp.constraints.txt" in text
    assert "regression" not in stderr.lower()

    code, checks, stderr = audit(locked, "--allow-other-environment")
    assert code == 0, stderr
    [check] = checks
    assert (check["status"], check["kind"]) == ("skipped", "environment_changed")
    assert "bitwise equal anyway" in check["summary"]


def test_a_trajectory_field_change_asks_to_re_record(locked):
    spec = locked / "tiny.toml"
    spec.write_text(spec.read_text().replace("learning_rate = 0.001", "learning_rate = 0.5"))
    code, checks, stderr = audit(locked)
    assert code == 1
    [check] = checks
    assert (check["status"], check["kind"]) == ("failed", "trajectory_changed")
    assert check["details"]["changes"]["optimizer.learning_rate"] == [0.001, 0.5]
    assert "optimizer.learning_rate" in check["summary"] and "re-record" in check["summary"]
    assert "exp lock tiny.toml --steps 4 -o exp.lock" in one_line(stderr)
    assert "regression" not in stderr.lower()


def test_other_bits_with_everything_else_equal_is_a_regression(locked):
    edit_entry(locked, lambda e: e["ledger"]["2"].update(params="0" * len(e["ledger"]["2"]["params"])))
    code, checks, stderr = audit(locked)
    assert code == 1
    [check] = checks
    assert (check["status"], check["kind"], check["first_divergence"]) == ("failed", "regression", 2)
    assert "regression" in check["summary"]


def test_a_lock_with_nothing_to_compare_is_never_a_pass(locked):
    edit_entry(locked, lambda e: (e["ledger"].clear(), e["full_hashes"].clear()))
    code, checks, stderr = audit(locked)
    assert code == 2
    [check] = checks
    assert check["status"] == "error" and "nothing to compare" in check["summary"]


def test_an_edited_custom_module_is_an_input_change_naming_it(tmp_path):
    (tmp_path / "verdict_lab").mkdir()
    (tmp_path / "verdict_lab" / "__init__.py").write_text("")
    (tmp_path / "verdict_lab" / "nets.py").write_text(NETS)
    (tmp_path / "code.toml").write_text(CODE_SPEC)
    allow = ("--allow-import", "verdict_lab")
    recorded = exp("lock", "code.toml", *allow, "--steps", "2", "-o", "exp.lock", cwd=tmp_path, timeout=600)
    assert recorded.returncode == 0, recorded.stderr
    [entry] = json.loads((tmp_path / "exp.lock").read_text())["entries"]
    code_inputs = {k: v for k, v in entry["inputs"].items() if k.startswith("code:")}
    assert len(code_inputs) >= 1 and all("verdict_lab" in k for k in code_inputs)

    (tmp_path / "verdict_lab" / "nets.py").write_text(NETS.replace("rngs=rngs)", "rngs=rngs, use_bias=True)"))
    code, checks, stderr = audit(tmp_path, *allow)
    assert code == 1
    [check] = checks
    assert (check["status"], check["kind"]) == ("failed", "input_changed")
    changed = check["details"]["inputs"]
    assert changed and all(k.startswith("code:") and "verdict_lab" in k for k in changed)
    assert "verdict_lab" in check["summary"]
    for before, after in changed.values():
        assert before in one_line(stderr) and after in one_line(stderr)
    assert "regression" not in stderr.lower()
