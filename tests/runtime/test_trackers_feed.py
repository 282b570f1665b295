"""The trackers' feed: records reach a tracker on its own thread; a stuck tracker never holds the
writer (its queue drops, and says so once), a failing one is recorded once and the rest goes on."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from expspec.runtime.runs.records import JsonLines
from expspec.runtime.runs.run_files import RunFiles
from expspec.runtime.runs.trackers import QUEUE_SIZE, TrackedRun, TrackerFeed

PLAN = {"spec": {"logging": {}}, "fingerprints": {"trajectory": "t" * 64, "spec": "s" * 64}}
ENV = {"class": {}, "class_id": "c" * 16}


class Recording:
    """A tracker that keeps what it is given; `gate` holds its start, `fail_on` makes a call raise."""

    def __init__(self, key: str, gate: threading.Event | None = None, fail_on: str | None = None) -> None:
        self.key, self.gate, self.fail_on = key, gate, fail_on
        self.points: list[tuple[str, int]] = []
        self.events: list[str] = []
        self.outcome: str | None = "not closed"

    def _maybe_fail(self, call: str) -> None:
        if call == self.fail_on:
            raise OSError(f"{call}: no space left on device")

    def open(self, run: TrackedRun, state: dict[str, Any], save: Any) -> dict[str, int]:
        if self.gate is not None:
            self.gate.wait(30)
        state["id"] = self.key
        save()
        self._maybe_fail("open")
        return {}

    def metrics(self, records: list[tuple[str, int, dict[str, float], float | None]]) -> None:
        self._maybe_fail("metrics")
        self.points += [(key, step) for _, step, values, _ in records for key in values]

    def event(self, record: dict[str, Any]) -> None:
        self.events.append(record["event"])

    def close(self, outcome: str | None) -> None:
        self.outcome = outcome

    def attach_verdicts(self, state: dict[str, Any], spec: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
        raise NotImplementedError


def feed_for(tmp_path: Path, *trackers: Recording) -> tuple[TrackerFeed, JsonLines, JsonLines]:
    files = RunFiles(tmp_path)
    events = JsonLines(files.events)
    feed = TrackerFeed(TrackedRun(files, PLAN, ENV, tmp_path, 0), list(trackers), events)
    return feed, feed.tracked(JsonLines(files.metrics), "metrics"), feed.tracked(events, "events")


def recorded_events(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def test_records_reach_the_tracker_after_their_file(tmp_path):
    tracker = Recording("wandb")
    feed, metrics, events = feed_for(tmp_path, tracker)
    events.write({"event": "start", "step": 0})
    for step in (2, 4):
        metrics.write({"step": step, "split": "train", "loss": 1.0 / step, "steps_per_s": 9.0, "time": 1.0})
    metrics.write({"step": 4, "split": "eval", "accuracy": 0.5, "time": 1.0})
    events.write({"event": "finished", "step": 4})
    metrics.close()
    events.close()
    assert tracker.points == [
        ("train/loss", 2),
        ("train/steps_per_s", 2),
        ("train/loss", 4),
        ("train/steps_per_s", 4),
        ("eval/accuracy", 4),
    ]
    assert tracker.events == ["start", "finished"] and tracker.outcome == "finished"
    assert json.loads((tmp_path / "trackers.json").read_text()) == {"wandb": {"id": "wandb"}}
    assert [e["event"] for e in recorded_events(tmp_path)] == ["start", "finished"]


def test_a_stuck_tracker_drops_records_instead_of_holding_the_writer(tmp_path):
    gate = threading.Event()
    tracker = Recording("wandb", gate=gate)
    feed, metrics, events = feed_for(tmp_path, tracker)
    began = time.monotonic()
    for step in range(1, QUEUE_SIZE + 101):
        metrics.write({"step": step, "split": "train", "loss": 0.5, "time": 1.0})
    writing = time.monotonic() - began
    assert writing < 10, f"writing {QUEUE_SIZE + 100} records took {writing:.1f} s: the writer waited"
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == QUEUE_SIZE + 100  # the record is whole
    gate.set()
    metrics.close()
    events.close()
    assert len(tracker.points) == QUEUE_SIZE  # what the queue held, in order
    assert tracker.points[0] == ("train/loss", 1) and tracker.points[-1] == ("train/loss", QUEUE_SIZE)
    dropped = [e for e in recorded_events(tmp_path) if e["event"] == "tracker_dropped"]
    # Once when it starts dropping (with the step), once at the end (with the count).
    assert [(e.get("step"), e.get("count")) for e in dropped] == [(QUEUE_SIZE + 1, None), (None, 100)]


def test_a_failing_tracker_is_recorded_once_and_the_others_go_on(tmp_path):
    broken, healthy = Recording("mlflow", fail_on="metrics"), Recording("wandb")
    feed, metrics, events = feed_for(tmp_path, broken, healthy)
    for step in range(1, 51):
        metrics.write({"step": step, "split": "train", "loss": 0.5, "time": 1.0})
        time.sleep(0.001)
    events.write({"event": "finished", "step": 50})
    metrics.close()
    events.close()
    errors = [e for e in recorded_events(tmp_path) if e["event"] == "tracker_error"]
    assert len(errors) == 1, errors
    assert errors[0]["tracker"] == "mlflow" and "no space left on device" in errors[0]["error"]
    assert broken.outcome == "not closed" and broken.points == []
    assert [step for _, step in healthy.points] == list(range(1, 51)) and healthy.outcome == "finished"
    assert not any(e["event"] == "tracker_dropped" for e in recorded_events(tmp_path))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 50
