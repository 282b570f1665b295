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
