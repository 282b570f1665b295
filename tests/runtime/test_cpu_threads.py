"""Pinning XLA:CPU's thread pool makes the bits independent of the machine's cores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.runtime.runs import DIGITS, EXP, run_json

# A batch large enough that XLA:CPU splits its reductions across threads.
WORKLOAD = (
    str(DIGITS),
    'data={kind="synthetic", task="regression", samples=300000, features=8, batch_size=262144, test_fraction=0.1}',
    "model.hidden=[]",
    "train.steps=3",
    "checkpoint.enabled=false",
    "train.eval_every=0",
)

needs_taskset = pytest.mark.skipif(
    shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2, reason="needs taskset and 2 cores"
)


@needs_taskset
def test_one_core_and_two_cores_give_the_same_bits(tmp_path):
    two_cores = run_json(*WORKLOAD, "--run-dir", str(tmp_path / "two"))
    one_core = subprocess.run(
        ["taskset", "-c", "0", EXP, "run", *WORKLOAD, "--run-dir", str(tmp_path / "one"), "--json", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one_core.returncode == 0, one_core.stderr
    assert json.loads(one_core.stdout)["full_hash"] == two_cores["full_hash"]


@needs_taskset
def test_the_thread_pool_size_does_change_these_bits(tmp_path):
    """The control: without pinning, a 1-core machine would run with one thread."""
    one = run_json(*WORKLOAD, "determinism.cpu_threads=1", "--run-dir", str(tmp_path / "one"))
    two = run_json(*WORKLOAD, "determinism.cpu_threads=2", "--run-dir", str(tmp_path / "two"))
    assert one["full_hash"] != two["full_hash"]
