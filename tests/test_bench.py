"""The benchmark scripts run and report ratios measured in the same run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_audit_cost_bench_reports_a_ratio(tmp_path):
    out = tmp_path / "audit.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "audit_cost.py"), "--steps", "2", "--repeats", "1", "--json", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    row = json.loads(out.read_text())
    assert row["steps"] == 2 and row["plain_run_s"] > 0 and row["audit_s"] > row["plain_run_s"]
    assert row["ratio"] == row["audit_s"] / row["plain_run_s"]


def test_bench_runner_reports_each_figure_as_a_ratio_of_its_own_run(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--only", "P4", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["id"] == "P4" and row["unit"] == "bytes/s" and row["value"] > 0 and row["baseline"] > 0
    assert row["ratio"] == row["value"] / row["baseline"]
    assert row["met"] == (row["ratio"] >= 1.0)
    assert "P4" in result.stdout and report["command"].endswith("--only P4 --json " + str(out))


def test_bench_runner_refuses_an_unknown_id(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--only", "P99", "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "P99" in result.stderr
    assert not (tmp_path / "r.json").exists()
