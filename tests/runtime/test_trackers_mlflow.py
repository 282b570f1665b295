"""`[logging] mlflow = {...}`: an MLflow run in a `file:` store, read back through MlflowClient,
holds every record of metrics.jsonl, the resolved plan, the fingerprints and environment class,
the events, and the verdicts `exp audit RUN_DIR` adds. A tracker that fails leaves the run alone."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.runtime.runs import exp
from tests.runtime.trackers_read import TINY, metrics_points, mlflow_client, mlflow_points, tracked_spec, tracker_env


def artifact(run, name: str) -> Path:
    return Path(urlparse(run.info.artifact_uri).path) / name


def test_a_file_store_run_holds_the_metrics_plan_tags_events_and_audit(tmp_path):
    # A relative `file:` folder is the spec's folder's, whatever the working directory (ROOT here).
    spec = tracked_spec(tmp_path, 'mlflow = { tracking_uri = "file:mlruns", experiment = "digits" }')
    run_dir, env = tmp_path / "run", tracker_env(tmp_path)
    result = exp("run", str(spec), *TINY, "--run-dir", str(run_dir), "-q", env=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"].startswith("tracker_")], events

    client = mlflow_client(tmp_path / "mlruns")
    experiment = client.get_experiment_by_name("digits")
    (run,) = client.search_runs([experiment.experiment_id])
    state = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    assert state["run_id"] == run.info.run_id and state["tracking_uri"] == (tmp_path / "mlruns").as_uri()
    assert run.info.run_name == "run" and run.info.status == "FINISHED"

    points = mlflow_points(client, run.info.run_id)
    assert len(points) == len({(key, step) for key, step, _ in points}), "a step logged twice"
    expected = metrics_points(run_dir)
    assert {("train/loss", 12), ("eval/accuracy", 4), ("eval/loss", 12)} <= set(expected)
    assert {(key, step): value for key, step, value in points} == pytest.approx(expected, rel=1e-12)

    plan = json.loads((run_dir / "plan.json").read_text())
    environment = json.loads((run_dir / "env.json").read_text())
    params = run.data.params
    assert params["model.hidden"] == "[16]" and params["train.steps"] == "12" and params["name"] == "digits-mlp"
    assert params["logging.mlflow.experiment"] == "digits"
    assert json.loads(artifact(run, "plan.json").read_text()) == plan
    assert json.loads(artifact(run, "env.json").read_text())["class_id"] == environment["class_id"]
    tags = run.data.tags
    assert tags["expspec.trajectory"] == plan["fingerprints"]["trajectory"]
    assert tags["expspec.spec"] == plan["fingerprints"]["spec"]
    assert tags["expspec.environment_class"] == environment["class_id"]
    assert json.loads(tags["expspec.event.start"])["step"] == 0
    assert json.loads(tags["expspec.event.checkpoint_save"])["step"] == 12
    assert json.loads(tags["expspec.event.finished"])["full_hash"] == events[-1]["full_hash"]
    assert tags["expspec.outcome"] == "finished"
    assert artifact(run, "events.jsonl").read_text() == (run_dir / "events.jsonl").read_text()

    audit = exp("audit", str(run_dir), env=env)
    assert audit.returncode == 0, audit.stderr
    audited = client.get_run(run.info.run_id)
    assert audited.data.tags["expspec.audit.integrity"] == "passed"
    (verdict,) = json.loads(artifact(audited, "audit.json").read_text())["verdicts"]
    assert verdict["check"] == "integrity" and verdict["status"] == "passed"
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_a_tracker_that_fails_is_recorded_once_and_the_run_goes_on(tmp_path):
    # A store MLflow cannot write (its folder would sit under a file): as a full disk, for MLflow.
    (tmp_path / "not-a-folder").write_text("")
    spec = tracked_spec(tmp_path, 'mlflow = { tracking_uri = "file:not-a-folder/mlruns" }')
    run_dir = tmp_path / "run"
    result = exp("run", str(spec), *TINY, "--run-dir", str(run_dir), "-q", env=tracker_env(tmp_path))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    errors = [e for e in events if e["event"] == "tracker_error"]
    assert len(errors) == 1 and errors[0]["tracker"] == "mlflow", errors
    assert "NotADirectoryError" in errors[0]["error"]
    assert [e["event"] for e in events if e["event"] in ("finished", "error")] == ["finished"]
    assert ("train/loss", 12) in metrics_points(run_dir) and ("eval/loss", 12) in metrics_points(run_dir)
