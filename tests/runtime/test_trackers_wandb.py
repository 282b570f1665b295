"""`[logging] wandb = {...}`: an offline W&B run, read back from its own files, holds every record
of metrics.jsonl, the resolved plan, the fingerprints and environment class, the events, and the
verdicts `exp audit RUN_DIR` adds."""

from __future__ import annotations

import json

from tests.runtime.runs import exp
from tests.runtime.trackers_read import TINY, metrics_points, tracked_spec, tracker_env, wandb_points, wandb_segments


def test_an_offline_run_holds_the_metrics_plan_tags_events_and_audit(tmp_path):
    spec = tracked_spec(tmp_path, 'wandb = { project = "digits", mode = "offline", tags = ["mine"] }')
    run_dir, env = tmp_path / "run", tracker_env(tmp_path)
    result = exp("run", str(spec), *TINY, "--run-dir", str(run_dir), "-q", env=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"].startswith("tracker_")], events

    (segment,) = wandb_segments(run_dir)
    state = json.loads((run_dir / "trackers.json").read_text())["wandb"]
    assert segment.run_id == state["id"] and segment.project == "digits"

    points = wandb_points([segment])
    assert len(points) == len({(key, step) for key, step, _ in points}), "a step logged twice"
    expected = metrics_points(run_dir)
    assert {("train/loss", 12), ("eval/accuracy", 4), ("eval/loss", 12)} <= set(expected)
    assert {(key, step): value for key, step, value in points} == expected

    plan = json.loads((run_dir / "plan.json").read_text())
    environment = json.loads((run_dir / "env.json").read_text())
    assert segment.config["spec"] == plan["spec"] and segment.config["fingerprints"] == plan["fingerprints"]
    assert segment.config["environment"] == environment["class"]
    fingerprints = plan["fingerprints"]
    assert sorted(segment.tags) == sorted(
        [
            f"trajectory:{fingerprints['trajectory'][:16]}",
            f"spec:{fingerprints['spec'][:16]}",
            f"env:{environment['class_id']}",
            "mine",
        ]
    )
    assert segment.summary["expspec/trajectory"] == fingerprints["trajectory"]
    assert segment.summary["expspec/environment_class"] == environment["class_id"]
    assert segment.summary["events/start"]["step"] == 0
    assert segment.summary["events/checkpoint_save"]["step"] == 12
    assert segment.summary["events/finished"]["full_hash"] == events[-1]["full_hash"]
    assert segment.summary["expspec/outcome"] == "finished"

    audit = exp("audit", str(run_dir), env=env)
    assert audit.returncode == 0, audit.stderr
    first, attached = wandb_segments(run_dir)
    assert attached.run_id == state["id"] and first.history == segment.history
    assert attached.summary["audit/integrity"] == "passed" and attached.history == []
    assert attached.summary["audit/integrity/summary"].startswith("the one checkpoint restores")
