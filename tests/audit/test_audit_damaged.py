"""`exp audit RUN_DIR` on damaged records: bad input, one line naming the file, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from expspec.audit.ledger import read_ledger
from expspec.runtime.runs.records import DamagedRecord
from tests.runtime.runs import DIGITS, exp, run_json, snapshot

PREVIOUS_VERDICT = b'{"check": "integrity", "status": "passed", "summary": "an earlier audit", "time": 1.0}\n'


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("damaged")
    overrides = ("train.steps=6", "model.hidden=[16]", "train.eval_every=0", "checkpoint.every_steps=3")
    run_json(str(DIGITS), *overrides, "--run-dir", str(folder / "run"), cwd=folder)
    return folder / "run"


def _lines(run: Path, edit: Callable[[list[bytes]], None]) -> None:
    path = run / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    edit(lines)
    path.write_bytes(b"".join(lines))


def _cut_in_half(lines: list[bytes]) -> None:
    lines[3] = lines[3][: len(lines[3]) // 2] + b"\n"


def _plan(run: Path, edit: Callable[[bytes], bytes]) -> None:
    path = run / "plan.json"
    path.write_bytes(edit(path.read_bytes()))


def _without_a_field(text: bytes) -> bytes:
    plan = json.loads(text)
    del plan["determinism"]  # what a plan of another version can lack
    return json.dumps(plan).encode()


CASES = {
    "ledger-garbage": (lambda run: _lines(run, lambda ls: ls.insert(2, b"garbage\n")), "ledger.jsonl:3: not JSON"),
    "ledger-nul": (
        lambda run: _lines(run, lambda ls: ls.insert(2, b"\x00" * 64 + b"\n")),
        "ledger.jsonl:3: holds NUL bytes",
    ),
    "ledger-cut-mid-file": (lambda run: _lines(run, _cut_in_half), "ledger.jsonl:4: not JSON"),
    "plan-truncated": (lambda run: _plan(run, lambda text: text[: len(text) // 2]), "plan.json: not valid JSON"),
    "plan-other-version": (lambda run: _plan(run, _without_a_field), "plan.json: not a valid plan: determinism"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_records_are_bad_input(finished, tmp_path, case):
    damage, message = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "audits.jsonl").write_bytes(PREVIOUS_VERDICT)
    damage(run)
    before = snapshot(run)
    report = tmp_path / "report.json"
    result = exp("audit", str(run), "--json", str(report), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [check] = json.loads(report.read_text())["checks"]
    summary = check["summary"]
    assert check["status"] == "error" and summary.startswith(f"{run}/{message}"), summary
    assert f"integrity of {run}: {summary}" in result.stderr.splitlines(), result.stderr
    assert snapshot(run) == before  # audits.jsonl unchanged: no verdict about a run the audit could not read


def test_ledger_records_missing_their_fields_are_damaged(tmp_path):
    path = tmp_path / "ledger.jsonl"
    whole = '{"kind": "checkpoint", "step": 2, "full_hash": "ab"}\n'
    path.write_text(whole + '{"kind": "step", "step": 3, "params": "00"}\n' + '{"kind": "step", "torn')
    with pytest.raises(DamagedRecord, match=r"ledger.jsonl:2: .*'opt'"):
        read_ledger(tmp_path)
    path.write_text(whole + '{"kind": "checkpoint", "step": "2", "full_hash": "ab"}\n')
    with pytest.raises(DamagedRecord, match=r"ledger.jsonl:2: .*'step'"):
        read_ledger(tmp_path)
    path.write_text(whole + '{"kind": "step", "tor')
    assert read_ledger(tmp_path).checkpoints == {2: "ab"}
