"""`exp audit` and `exp lock` end to end, on real runs in fresh processes."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.runtime.runs import DIGITS, exp, run_json

FIXTURES = Path(__file__).parent / "fixtures"
ALLOW = ("--allow-import", "audit_fixtures")


def audit(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, dict, str]:
    """Run `exp audit`, returning (exit code, JSON report, stderr)."""
    out = (cwd or Path.cwd()) / f"report-{abs(hash(args)) % 10**9}.json"
    result = exp("audit", *args, "--json", str(out), env=env, cwd=cwd, timeout=900)
    report = json.loads(out.read_text()) if out.exists() else {}
    return result.returncode, report, result.stderr


def checks(report: dict) -> dict[str, dict]:
    return {c["check"]: c for c in report["checks"]}


def test_digits_audit_holds_at_every_step(tmp_path):
    code, report, stderr = audit(str(DIGITS), "--steps", "40", cwd=tmp_path)
    assert code == 0, stderr
    by = checks(report)
    assert by["determinism"]["status"] == by["resume"]["status"] == "passed"
    assert by["determinism"]["compared_steps"] == list(range(0, 21))
    assert by["resume"]["compared_steps"] == list(range(21, 41))
    assert by["resume"]["details"]["resumed_at"] == [20]
    assert "all checks hold" in stderr


def test_several_cuts_with_sigkill(tmp_path):
    code, report, stderr = audit(str(DIGITS), "--steps", "18", "--cuts", "2", "--kill", cwd=tmp_path)
    assert code == 0, stderr
    resume = checks(report)["resume"]
    assert resume["details"]["cuts"] == [6, 12] and resume["details"]["kill"] is True
    # Each kill landed after the checkpoint at its cut committed, before the next one did.
    assert resume["details"]["resumed_at"] == [6, 12]
    assert resume["compared_steps"] == list(range(7, 19))


def test_unseeded_initialisation_fails_determinism_at_step_0(tmp_path):
    code, report, stderr = audit(str(FIXTURES / "unseeded.toml"), "--steps", "6", *ALLOW, cwd=tmp_path)
    assert code == 1
    determinism = checks(report)["determinism"]
    assert determinism["status"] == "failed" and determinism["first_divergence"] == 0
    assert determinism["leaves"] == ["params/inner/kernel"]
    assert determinism["distances"][0]["path"] == "params/inner/kernel" and determinism["distances"][0]["max_abs"] > 0
    assert "initialisation draws randomness" in determinism["likely_cause"]
    assert "first diverging step: 0" in stderr and "params/inner/kernel" in stderr


def test_hidden_data_state_passes_determinism_and_fails_resume_right_after_the_cut(tmp_path):
    code, report, stderr = audit(str(FIXTURES / "counting.toml"), "--steps", "8", *ALLOW, cwd=tmp_path)
    assert code == 1
    by = checks(report)
    assert by["determinism"]["status"] == "passed"
    assert by["resume"]["status"] == "failed" and by["resume"]["first_divergence"] == 5  # cut at 4
    assert "state outside the checkpoint" in by["resume"]["likely_cause"]


def test_junit_has_one_failing_testcase_per_failed_check(tmp_path):
    junit = tmp_path / "report.xml"
    result = exp(
        "audit",
        str(FIXTURES / "counting.toml"),
        "--steps",
        "6",
        *ALLOW,
        "--junit",
        str(junit),
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 1
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    failing = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in cases] == ["determinism", "resume"] and len(failing) == 1
    assert failing[0].get("name") == "resume" and "step 4" in failing[0].find("failure").get("message")


@pytest.fixture
def lockable(tmp_path):
    """Copies of the digits spec (and its base) that a test may edit."""
    for name in ("digits_mlp.toml", "base.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    shutil.copy(FIXTURES / "perturbable.toml", tmp_path / "perturbable.toml")
    shutil.copy(FIXTURES / "audit_fixtures.py", tmp_path / "audit_fixtures.py")
    return tmp_path


def test_lock_tells_a_changed_trajectory_from_a_regression(lockable):
    recorded = exp(
        "lock", "digits_mlp.toml", "perturbable.toml", *ALLOW, "--steps", "6", "-o", "exp.lock", cwd=lockable
    )
    assert recorded.returncode == 0, recorded.stderr
    lock = json.loads((lockable / "exp.lock").read_text())
    assert [e["spec"] for e in lock["entries"]] == ["digits_mlp.toml", "perturbable.toml"]

    code, report, _ = audit("--lock", "exp.lock", *ALLOW, cwd=lockable)
    assert code == 0 and [c["status"] for c in report["checks"]] == ["passed", "passed"]

    code, report, _ = audit("--lock", "exp.lock", *ALLOW, env={"EXP_TEST_PERTURB": "1"}, cwd=lockable)
    assert code == 1
    digits, perturbed = report["checks"]
    assert digits["status"] == "passed"
    assert (perturbed["status"], perturbed["kind"], perturbed["first_divergence"]) == ("failed", "regression", 0)
    assert perturbed["leaves"] == ["params/inner/kernel"]

    spec = lockable / "digits_mlp.toml"
    spec.write_text(spec.read_text().replace("[train]", "[optimizer]\nlearning_rate = 0.5\n\n[train]"))
    code, report, _ = audit("--lock", "exp.lock", *ALLOW, cwd=lockable)
    assert code == 1
    changed = report["checks"][0]
    assert (changed["status"], changed["kind"]) == ("failed", "trajectory_changed")
    assert changed["details"]["changes"]["optimizer.learning_rate"] == [0.001, 0.5]
    assert "re-record" in changed["summary"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    run_json(
        str(DIGITS),
        "train.steps=30",
        "checkpoint.every_steps=10",
        "checkpoint.keep_last=5",
        "train.eval_every=0",
        "--run-dir",
        str(folder / "run"),
        cwd=folder,
    )
    return folder


def _copy_run(finished_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished_run / "run", tmp_path / "run")
    return tmp_path / "run"


def test_segment_of_a_finished_run_reproduces_its_ledger(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    code, report, stderr = audit(str(run), "--segment", "10:20", "--spec", str(DIGITS), cwd=tmp_path)
    assert code == 0, stderr
    by = checks(report)
    assert by["integrity"]["status"] == "passed" and by["integrity"]["compared_steps"] == [10, 20, 30]
    assert by["segment"]["status"] == "passed" and by["segment"]["compared_steps"] == list(range(11, 21))
    recorded = [json.loads(line) for line in (run / "audits.jsonl").read_text().splitlines()]
    assert [(r["check"], r["status"]) for r in recorded] == [("integrity", "passed"), ("segment", "passed")]


def test_segment_fails_on_a_tampered_ledger_naming_the_step(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    lines = (run / "ledger.jsonl").read_text().splitlines()
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record.get("kind") == "step" and record["step"] == 15:
            record["params"] = "0" * 16
            lines[i] = json.dumps(record)
    (run / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    code, report, _ = audit(str(run), "--segment", "10:20", "--spec", str(DIGITS), cwd=tmp_path)
    assert code == 1
    segment = checks(report)["segment"]
    assert segment["status"] == "failed" and segment["first_divergence"] == 15


def test_integrity_fails_on_altered_array_bytes(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    files = sorted(
        (p for p in (run / "checkpoints" / "20" / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    raw = bytearray(files[-1].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    files[-1].write_bytes(bytes(raw))
    code, report, _ = audit(str(run), cwd=tmp_path)
    assert code == 1
    integrity = checks(report)["integrity"]
    assert integrity["status"] == "failed" and integrity["first_divergence"] == 20
    assert list(integrity["details"]["bad"]) == ["20"]
    [recorded] = [json.loads(line) for line in (run / "audits.jsonl").read_text().splitlines()]
    assert (recorded["check"], recorded["status"]) == ("integrity", "failed") and "step 20" in recorded["summary"]


def test_bad_input_exits_2(tmp_path):
    assert exp("audit", cwd=tmp_path).returncode == 2
    code, report, _ = audit(str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert code == 2 and report["checks"][0]["status"] == "error"
    code, report, _ = audit("--lock", str(tmp_path / "missing.lock"), cwd=tmp_path)
    assert code == 2
