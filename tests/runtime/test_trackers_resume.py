"""A run SIGKILLed while its trackers hold steps past its last checkpoint, then resumed: one W&B run
and one MLflow run, continued, and no step in either twice (the resumed attempt computes those
steps again; the trackers already had them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.runtime.runs import EXP, ledger_records
from tests.runtime.trackers_read import (
    metrics_points,
    mlflow_client,
    mlflow_points,
    tracked_spec,
    tracker_env,
    wandb_points,
    wandb_segments,
)

LONG = (
    "train.steps=200000",
    "train.log_every=10",
    "train.eval_every=1000",
    "train.ledger_every=100",
    "checkpoint.every_steps=2000",
    "model.hidden=[16]",
)
"""Far more steps than the test lets it run: the kill comes long before the end."""


def held_steps(run_dir, store) -> tuple[int, int]:
    """The last step W&B's offline files and the MLflow store hold (-1: none yet)."""
    wandb_held = max((step for _, step, _ in wandb_points(wandb_segments(run_dir))), default=-1)
    try:
        client = mlflow_client(store)
        (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
        mlflow_held = max((step for _, step, _ in mlflow_points(client, run.info.run_id)), default=-1)
    except Exception:  # the store is being created or written: not yet
        mlflow_held = -1
    return wandb_held, mlflow_held


def last_checkpoint(run_dir) -> int:
    if not (run_dir / "ledger.jsonl").exists():
        return -1
    return max((r["step"] for r in ledger_records(run_dir) if r["kind"] == "checkpoint"), default=-1)


def test_a_killed_run_resumes_into_the_same_tracker_runs_without_a_step_twice(tmp_path):
    spec = tracked_spec(
        tmp_path, 'wandb = { project = "digits", mode = "offline" }\nmlflow = { tracking_uri = "file:mlruns" }'
    )
    run_dir, store, env = tmp_path / "run", tmp_path / "mlruns", {**os.environ, **tracker_env(tmp_path)}
    proc = subprocess.Popen(
        [EXP, "run", str(spec), *LONG, "--run-dir", str(run_dir), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 180
        while True:  # until both trackers hold steps past the latest checkpoint
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the trackers never caught up"
            saved = last_checkpoint(run_dir)
            if saved >= 2000 and min(held_steps(run_dir, store)) >= saved + 200:
                break
            time.sleep(0.05)
        ids = json.loads((run_dir / "trackers.json").read_text())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)

    killed_at = max(r["step"] for r in ledger_records(run_dir) if r["kind"] == "step")
    stop_at = killed_at + 500
    resumed = subprocess.run(
        [EXP, "run", str(spec), *LONG, "--run-dir", str(run_dir), "--stop-at", str(stop_at), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"].startswith("tracker_")], events
    (resume,) = [e for e in events if e["event"] == "resume"]
    assert json.loads((run_dir / "trackers.json").read_text()) == ids  # the same tracker runs

    expected = metrics_points(run_dir)  # every step once; a recomputed one holds the same numbers
    assert max(step for _, step in expected) == stop_at

    def same_numbers(points):
        keys = [(key, step) for key, step, _ in points]
        assert len(keys) == len(set(keys)), "a step logged twice"
        assert set(keys) == set(expected)
        # The rate is a measurement (each attempt its own), the rest is computed, bit for bit.
        computed = {(key, step): value for key, step, value in points if not key.endswith("steps_per_s")}
        assert computed == {key: value for key, value in expected.items() if not key[0].endswith("steps_per_s")}

    segments = wandb_segments(run_dir)
    assert [s.run_id for s in segments] == [ids["wandb"]["id"]] * 2
    assert max(step for _, step, _ in wandb_points(segments[:1])) > resume["step"]  # the killed one held more
    same_numbers(wandb_points(segments))

    client = mlflow_client(store)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_id == ids["mlflow"]["run_id"]
    points = mlflow_points(client, run.info.run_id)
    history = [m for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)]
    before_resume = [m.step for m in history if m.timestamp < resume["time"] * 1000]
    assert max(before_resume) > resume["step"]  # the killed attempt logged steps it then computed again
    same_numbers(points)
