"""The Tunix comparison bench (P14-P16) runs at a tiny size and reports ratios of its own measurements.

The Tunix side needs a separate Python with google-tunix installed (see
bench/tunix_trainer.py), named by $EXPSPEC_TUNIX_PYTHON; without it the test
that needs it is skipped, and the bench itself must say so in its rows.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BENCH = [sys.executable, str(ROOT / "bench" / "tunix_compare.py")]
TINY = ["--repeats", "1", "--mlp-window", "10,30", "--lm-window", "2,6", "--resume-at", "40"]


def _run(tmp_path, *args, tunix=None):
    out, scratch = tmp_path / "tunix.json", tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "EXPSPEC_TUNIX_PYTHON"}
    env["TMPDIR"] = str(scratch)
    if tunix:
        env["EXPSPEC_TUNIX_PYTHON"] = tunix
    result = subprocess.run(
        [*BENCH, *TINY, *args, "--json", str(out)], capture_output=True, text=True, timeout=900, env=env
    )
    assert result.returncode == 0, result.stderr
    # Every run directory and checkpoint lived in the scratch folder, now gone.
    assert not list(scratch.glob("exp-bench-*"))
    return result.stdout, json.loads(out.read_text())["rows"]


@pytest.mark.slow
def test_without_tunix_the_tunix_rows_say_not_measured_and_the_exp_rows_are_measured(tmp_path):
    stdout, rows = _run(tmp_path, "--parts", "mlp,resume")
    p15, p16_exp, p16_tunix = rows
    for row in (p15, p16_tunix):
        assert row["met"] is None and math.isnan(row["ratio"]) and row["notes"] == {"not_measured": "no --tunix-python"}
        assert "not measured (no --tunix-python)" in row["measure"] and row["measure"] in stdout
    assert p15["id"] == "P15" and p15["target"] == ">= 3"
    # P16 for exp run: a resumed process against a fresh one, both timed from process start.
    assert p16_exp["id"] == "P16" and "exp run" in p16_exp["measure"] and p16_exp["notes"]["resumed_at"] == 40
    assert p16_exp["value"] == statistics.median(p16_exp["notes"]["resumed_s"]) > 0
    assert p16_exp["baseline"] == statistics.median(p16_exp["notes"]["fresh_s"]) > 0
    assert p16_exp["ratio"] == p16_exp["value"] / p16_exp["baseline"] and p16_exp["met"] == (p16_exp["ratio"] <= 1.2)


@pytest.mark.slow
def test_tunix_trains_the_same_bits_and_every_figure_is_a_ratio_of_this_run(tmp_path):
    tunix = os.environ.get("EXPSPEC_TUNIX_PYTHON")
    if not tunix:
        pytest.skip("needs $EXPSPEC_TUNIX_PYTHON: a Python with google-tunix (see bench/tunix_trainer.py)")
    stdout, rows = _run(tmp_path, tunix=tunix)
    assert [row["id"] for row in rows] == ["P14", "P15", "P15", "P15", "P16", "P16"]
    for row in rows:
        assert row["value"] > 0 and row["baseline"] > 0 and row["ratio"] == row["value"] / row["baseline"], row
        assert row["measure"] in stdout
    p14, lm, mlp, bare, resumed_exp, resumed_tunix = rows
    assert p14["met"] == (p14["ratio"] >= 0.95) and p14["notes"]["window"] == "(2, 6]"
    assert lm["unit"] == "tokens/s" and lm["met"] == (lm["ratio"] >= 1.2)
    assert lm["value"] == p14["notes"]["tokens_per_s"]  # the same exp runs, counted in tokens
    assert mlp["unit"] == "steps/s" and mlp["met"] == (mlp["ratio"] >= 3) and bare["met"] is None
    assert mlp["value"] == bare["value"] and "no progress bar" in bare["measure"]
    # Same model, initial parameters, optimizer, batches and dropout keys: the same final parameters.
    for row, leaves in ((mlp, 6), (lm, p14["notes"]["trained_leaves"])):
        bits = row["notes"]["same_final_bits"]
        assert bits["equal"] and bits["leaves"] == bits["leaves_equal"] == leaves and not bits["leaves_differ"], bits
        assert row["notes"]["environments"]["same"]
    assert mlp["notes"]["same_final_bits"]["step"] == 30 and lm["notes"]["same_final_bits"]["step"] == 6
    assert resumed_exp["met"] == (resumed_exp["ratio"] <= 1.2) and resumed_tunix["met"] is None
    assert "Tunix" in resumed_tunix["measure"] and resumed_tunix["notes"]["resumed_at"] == 40
