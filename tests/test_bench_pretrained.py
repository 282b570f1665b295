"""The pretrained-model bench runs at a tiny size and reports ratios of its own measurements."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_pretrained_bench_reports_each_figure_as_a_ratio_of_its_own_run(tmp_path):
    out, scratch, user_cache = tmp_path / "pretrained.json", tmp_path / "tmp", tmp_path / "user-cache"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "EXPSPEC_CACHE_DIR": str(user_cache)}
    argv = [sys.executable, str(ROOT / "bench" / "pretrained.py"), "--first", "10", "--last", "20"]
    options = ["--load-mb", "2", "--repeats", "1", "--json", str(out)]
    result = subprocess.run([*argv, *options], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["id"] for row in rows] == ["L1", "L2", "L3", "L3", "L3"]
    for row in rows:
        assert row["value"] > 0 and row["baseline"] > 0, row
        assert row["ratio"] == row["value"] / row["baseline"], row
        assert row["measure"] in result.stdout
    l1, l2, *l3 = rows
    # L1, L2: exp run with and without checkpoints against one hand-written loop, over the window.
    for row in (l1, l2):
        notes = row["notes"]
        assert row["value"] == statistics.median(notes["exp_steps_per_s"]) and notes["window"] == "(10, 20]"
        assert row["baseline"] == statistics.median(notes["handwritten_steps_per_s"])
        assert notes["tokens_per_step"] == notes["shapes"]["batch_size"] * notes["shapes"]["seq_len"]
        assert notes["tokens_per_s"] == row["value"] * notes["tokens_per_step"]
        assert row["met"] == (row["ratio"] >= 0.95)
    assert l1["notes"]["handwritten_steps_per_s"] == l2["notes"]["handwritten_steps_per_s"]
    assert l2["notes"]["checkpoint_saves_in_window"] == [0]
    # Both sides train the same adapter leaves (the bench refuses otherwise), a small part of the model.
    assert l1["notes"]["trained_leaves"] > 0 and 0 < l1["notes"]["trained_params"] < 100_000
    # L3: the growth of the loading process's own VmHWM against the loaded parameters' bytes.
    assert [row["measure"].split(", ", 1)[1] for row in l3] == [
        "float32 files, float32 run",
        "bfloat16 files, bfloat16 run",
        "float32 files, bfloat16 run",
    ]
    for row in l3:
        (report,) = row["notes"]["reports"]
        assert row["value"] == report["after"]["VmHWM"] - report["before"]["VmHWM"]
        assert row["baseline"] == report["param_bytes"]
        assert row["met"] == (row["ratio"] <= 1.5)
    f32, bf16, cast = l3
    assert f32["baseline"] == 2 * bf16["baseline"] == 2 * cast["baseline"] == f32["notes"]["file_bytes"]
    assert report["param_dtypes"] == ["bfloat16"]
    # The folders and runs lived in the scratch folder, now gone; the user's cache was never used.
    assert not list(scratch.glob("exp-bench-pretrained-*")) and not user_cache.exists()
