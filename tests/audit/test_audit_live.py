"""`exp audit RUN_DIR` while the run trains: checkpoints retired under the audit are never called corrupt."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from expspec.audit.checks import audit_integrity
from tests.runtime.runs import DIGITS, exp, kill, start, wait_for_step

LIVE = (
    "train.steps=1000000",
    "model.hidden=[16]",
    "train.eval_every=0",
    "checkpoint.every_steps=2",
    "checkpoint.keep_last=2",
)


def _audit(run: Path, cwd: Path) -> tuple[int, dict, str]:
    report = cwd / "report.json"
    report.unlink(missing_ok=True)
    result = exp("audit", str(run), "--json", str(report), cwd=cwd)
    return result.returncode, json.loads(report.read_text()) if report.exists() else {}, result.stderr


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_audits_of_a_live_run_report_no_corruption_and_corruption_after_it_ends(tmp_path, capfd):
    run = tmp_path / "run"
    proc = start(str(DIGITS), *LIVE, "--run-dir", str(run), cwd=tmp_path)
    try:
        wait_for_step(run, 6, proc)
        # In this process, back to back: many reads race with the run retiring its checkpoints.
        seen = []
        for _ in range(20):
            result = audit_integrity(run)
            assert result.status in ("passed", "skipped"), (result.summary, result.details)
            seen.append(result.status)
        for _ in range(3):  # and the whole command: report, exit code, stderr, audits.jsonl
            assert proc.poll() is None, "the run must still be training while it is audited"
            code, report, stderr = _audit(run, tmp_path)
            assert code == 0, stderr
            assert "Traceback" not in stderr and "Event loop is closed" not in stderr, stderr
            [check] = report["checks"]
            assert check["status"] in ("passed", "skipped") and "corruption" not in stderr, stderr
    finally:
        kill(proc, signal.SIGTERM)
    here = capfd.readouterr().err
    assert "Traceback" not in here and "Event loop is closed" not in here, here
    audits = run / "audits.jsonl"
    verdicts = [json.loads(line) for line in (audits.read_text() if audits.exists() else "").splitlines()]
    assert all(v["status"] == "passed" for v in verdicts), verdicts  # a live skip is not recorded
    assert "passed" in seen

    # The run has ended: a checkpoint changed on disk is corruption, reported by the same path.
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    flipped, lost = steps[-2], steps[-1]
    data = _largest_file(run / "checkpoints" / str(flipped) / "state")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    # A lost file fails Orbax's restore while other reads are in flight: the case that
    # printed TensorStore's "Event loop is closed" tracebacks.
    (run / "checkpoints" / str(lost) / "state" / "manifest.ocdbt").unlink()
    code, report, stderr = _audit(run, tmp_path)
    assert code == 1, stderr
    assert "Traceback" not in stderr and "Event loop is closed" not in stderr, stderr
    [check] = report["checks"]
    assert check["status"] == "failed" and sorted(map(int, check["details"]["bad"])) == [flipped, lost]
    assert json.loads(audits.read_text().splitlines()[-1])["status"] == "failed"
