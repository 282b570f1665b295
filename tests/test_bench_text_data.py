"""The text-data bench runs at a tiny size and reports ratios of its own measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_text_data_bench_reports_each_figure_as_a_ratio_of_its_own_run(tmp_path):
    out, scratch, user_cache = tmp_path / "text.json", tmp_path / "tmp", tmp_path / "user-cache"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "EXPSPEC_CACHE_DIR": str(user_cache)}
    argv = [sys.executable, str(ROOT / "bench" / "text_data.py"), "--size-mb", "2", "--small-mb", "1"]
    options = ["--batches", "40", "--steps", "30", "--repeats", "1", "--json", str(out)]
    result = subprocess.run([*argv, *options], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    rows = {row["id"]: row for row in report["rows"]}
    assert sorted(rows) == ["T1", "T2", "T3", "T4", "T5"]
    for row in rows.values():
        assert row["value"] > 0 and row["baseline"] > 0, row
        assert row["ratio"] == row["value"] / row["baseline"], row
        assert row["id"] in result.stdout
    runs, rate = rows["T2"]["notes"], rows["T3"]["notes"]
    # T1, T2: two fresh processes, each over its own corpus of the size asked for.
    assert (rows["T1"]["value"], rows["T1"]["baseline"]) == (
        runs["large"]["start_to_first_batch_s"],
        runs["small"]["start_to_first_batch_s"],
    )
    assert (rows["T2"]["value"], rows["T2"]["baseline"]) == (
        runs["large"]["peak_rss_bytes"],
        runs["small"]["peak_rss_bytes"],
    )
    assert runs["corpora"]["large"]["bytes"] >= 2 << 20 and runs["corpora"]["small"]["bytes"] >= 1 << 20
    assert runs["large"]["batches"] == 40 and runs["large"]["train_rows"] > runs["small"]["train_rows"]
    assert rows["T2"]["met"] == (rows["T2"]["ratio"] <= 1.2) and rows["T3"]["met"] == (rows["T3"]["ratio"] >= 5)
    # T3: the data path's rate on the large corpus; the step rate from the exp run's window.
    assert rows["T3"]["value"] == rate["large_batches_per_s"] and rate["window"] == "(10, 30]"
    assert rows["T4"]["value"] < rows["T4"]["baseline"]  # a cached fingerprint reads nothing
    assert rows["T5"]["notes"]["bytes"] == runs["corpora"]["large"]["bytes"]
    # The corpora and caches lived in the scratch folder, now gone; the user's cache was never used.
    assert not list(scratch.glob("exp-bench-text-data-*")) and not user_cache.exists()
