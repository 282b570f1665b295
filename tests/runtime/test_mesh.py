"""Sharded meshes in one process, on virtual CPU devices: determinism, resume
after SIGKILL, the layout the runs record, and restoring onto another mesh."""

from __future__ import annotations

import json
import signal
import time

import pytest

from expspec.compiler.mesh import partition
from tests.runtime.runs import DIGITS, exp, kill, ledger, run_json, start, wait_for_step

ARGS = (str(DIGITS), "train.steps=160", "checkpoint.every_steps=20", "train.eval_every=0")


@pytest.fixture
def devices(monkeypatch):
    """Give the `exp` processes this test starts `n` virtual CPU devices."""

    def use(n: int) -> None:
        monkeypatch.setenv("XLA_FLAGS", f"--xla_force_host_platform_device_count={n}")

    return use


def _events(run_dir, name):
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["event"] == name]


@pytest.mark.parametrize(
    "mesh",
    [
        # ~18 s each: the split layout runs by default, the pure data-parallel one with -m slow.
        pytest.param(("mesh.data=8",), marks=pytest.mark.slow, id="data8"),
        pytest.param(("mesh.data=2", "mesh.fsdp=4"), id="data2-fsdp4"),
    ],
)
def test_sharded_runs_repeat_and_resume_after_sigkill_bitwise(tmp_path, devices, mesh):
    devices(8)
    a = run_json(*ARGS, *mesh, "--run-dir", str(tmp_path / "a"))
    b = run_json(*ARGS, *mesh, "--run-dir", str(tmp_path / "b"))
    assert a["full_hash"] == b["full_hash"]
    assert ledger(tmp_path / "a") == ledger(tmp_path / "b")

    killed = tmp_path / "killed"
    proc = start(*ARGS, *mesh, "--run-dir", str(killed))
    wait_for_step(killed, 30, proc)
    while '"kind":"checkpoint"' not in (killed / "ledger.jsonl").read_text():  # committed: something to resume from
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    assert kill(proc, signal.SIGKILL) == -signal.SIGKILL
    resumed = run_json(*ARGS, *mesh, "--run-dir", str(killed))
    assert _events(killed, "resume"), "the second process must have resumed from a checkpoint"
    assert resumed["full_hash"] == a["full_hash"]
    assert ledger(killed) == ledger(tmp_path / "a")


def test_fsdp_splits_each_state_array_by_the_plan_rule(tmp_path, devices):
    devices(8)
    run_json(*ARGS, "train.steps=2", "mesh.data=2", "mesh.fsdp=4", "--run-dir", str(tmp_path))
    (layout,) = _events(tmp_path, "layout")
    assert layout["mesh"] == {"data": 2, "fsdp": 4} and layout["devices"] == 8
    sharded = layout["sharded"]
    # The digits MLP is 64 -> 256 -> 256 -> 10: the last bias (10) splits 4 ways nowhere.
    shapes = {
        "params/layers/0/kernel": (64, 256),
        "params/layers/1/kernel": (256, 256),
        "params/layers/2/kernel": (256, 10),
        "params/layers/0/bias": (256,),
    }
    for path, shape in shapes.items():
        assert sharded[path] == list(partition(shape, 4)), path
        assert sharded[path.replace("params/", "opt/1/0/mu/")] == sharded[path], "moments follow their parameter"
    assert "params/layers/2/bias" not in sharded


def test_mesh_larger_than_the_devices_is_refused_cleanly(tmp_path, devices):
    devices(4)
    result = exp("run", *ARGS, "mesh.data=8", "--run-dir", str(tmp_path / "run"), "-q")
    assert result.returncode == 2, result.stderr
    assert "mesh.data" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_8_device_checkpoint_restores_on_4_devices_and_the_audit_measures_the_distance(tmp_path, devices):
    spec = (*ARGS, "train.steps=30", "checkpoint.every_steps=10", "mesh.data=-1")
    devices(8)
    moved = tmp_path / "moved"
    run_json(*spec, "--stop-at", "10", "--run-dir", str(moved))
    straight = tmp_path / "straight"
    run_json(*spec, "--run-dir", str(straight))

    devices(4)
    finished = run_json(*spec, "--run-dir", str(moved))
    assert finished["outcome"] == "finished" and finished["step"] == 30
    (change,) = _events(moved, "environment_change")
    assert (change["before"]["device_count"], change["after"]["device_count"]) == (8, 4)
    assert _events(moved, "layout")[-1]["devices"] == 4

    report = tmp_path / "audit.json"
    audit = exp("audit", str(straight), "--segment", "10:20", "--json", str(report), timeout=600)
    assert audit.returncode == 0, audit.stderr
    (segment,) = [r for r in json.loads(report.read_text())["checks"] if r["check"] == "segment"]
    assert segment["status"] == "skipped" and segment["kind"] == "cross_environment"
    assert {"device_count", "mesh"} <= set(segment["environment"])
    # 8 and 4 devices split the batch reductions differently: the bits part, by a measured amount.
    assert segment["first_divergence"] is not None
    assert segment["details"]["max_ulp"] > 0
    assert f"max {segment['details']['max_ulp']} ulp" in audit.stderr
