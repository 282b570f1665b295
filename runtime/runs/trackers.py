"""Experiment trackers (`[logging] wandb`, `[logging] mlflow`) fed from the run's own records.

`metrics.jsonl` and `events.jsonl` stay the record; a tracker is a view of them
where a team already looks. The session wraps both record files (`TrackerFeed.tracked`):
each record is written to its file first, then handed to each tracker's bounded
queue, which that tracker's own thread empties, so a slow or dead network never
holds the training loop. A full queue drops the record (`tracker_dropped`); a
tracker that raises is recorded once (`tracker_error`) and gets nothing more this
attempt. Both notes are written to events.jsonl by the thread that writes the
other events, never by a tracker's thread.

A tracker run is tied to the run directory: `trackers.json` keeps its id, so a
resumed attempt continues it. Steps an earlier attempt already gave the tracker
are not given again: each tracker says, when it opens, the last step it holds
for each metric (asked of the tracker itself, so a kill between a record and any
bookkeeping of ours, or in the middle of the tracker's own write, cannot duplicate
or lose a point), and the points after those steps which this attempt will not
compute again (up to its resume point) are sent from `metrics.jsonl`.

This module imports neither wandb nor MLflow: a run that asks for neither never
loads them, and one that asks for a missing one is refused before it starts.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from expspec.atomic_files import write_atomic
from expspec.errors import BadInput
from expspec.runtime.runs.records import JsonLines, ignore_damage, iter_jsonl
from expspec.runtime.runs.run_files import ENDS, Event, RunFiles

if TYPE_CHECKING:
    from expspec.compiler import Plan

__all__ = [
    "QUEUE_SIZE",
    "Tracker",
    "TrackedRun",
    "TrackerFeed",
    "TrackerMissing",
    "attach_verdicts",
    "held_after",
    "read_state",
    "require_trackers",
    "scalars",
]

QUEUE_SIZE = 10_000
"""Records waiting for a tracker's thread; past that they are dropped, never waited for."""
CLOSE_S = 60.0
"""How long the end of an attempt waits for the trackers to send what they hold."""

_MODULES = {"wandb": "wandb", "mlflow": "mlflow"}
"""Spec key under `[logging]` -> the module its tracker needs."""
_NOT_SCALARS = frozenset({"step", "split", "time"})
_END = object()


class TrackerMissing(BadInput):
    """The spec asks for a tracker whose library is not installed."""


def require_trackers(logging: Any) -> None:
    """Raise `TrackerMissing` for the first tracker `logging` (a `LoggingSpec`) asks for
    whose library cannot be imported (found without importing it)."""
    for key, module in _MODULES.items():
        if getattr(logging, key) is not None and importlib.util.find_spec(module) is None:
            raise TrackerMissing(
                f"logging.{key}: is set but {module} is not installed; install it with "
                f"pip install 'expspec[{key}]', or remove logging.{key}"
            )


def scalars(record: dict[str, Any]) -> tuple[str, int, dict[str, float]]:
    """A metrics record as (split, step, {"<split>/<name>": value}): its numbers, as TensorBoard gets them."""
    split = str(record.get("split", "train"))
    values = {
        f"{split}/{name}": float(value)
        for name, value in record.items()
        if name not in _NOT_SCALARS and not isinstance(value, bool) and isinstance(value, int | float)
    }
    return split, int(record["step"]), values


@dataclass(frozen=True)
class TrackedRun:
    """What a tracker is told about the run it shows."""

    files: RunFiles
    plan: dict[str, Any]
    """The resolved plan (`Plan.to_dict()`)."""
    env: dict[str, Any]
    """The environment (`environment_class`): its `class` and `class_id`."""
    spec_dir: Path
    """The spec file's folder: a relative `file:` tracking URI resolves against it."""
    start: int
    """The step this attempt trains from (0: a fresh run)."""

    @property
    def logging(self) -> dict[str, Any]:
        return self.plan["spec"]["logging"]

    @property
    def tags(self) -> dict[str, str]:
        """What a tracker tags its run with: the two fingerprints and the environment class."""
        fingerprints = self.plan["fingerprints"]
        return {
            "trajectory": fingerprints["trajectory"],
            "spec": fingerprints["spec"],
            "environment_class": self.env["class_id"],
        }


class Tracker(Protocol):
    """One tracker's side of the feed; every method runs on the tracker thread."""

    key: str
    """Its key under `[logging]` and in trackers.json."""

    def open(self, run: TrackedRun, state: dict[str, Any], save: Callable[[], None]) -> dict[str, int]:
        """Start the tracker's run, or continue the one `state` names; the last step it holds of each
        metric (`train/loss`: 40), or of every metric (`*`), see `held_after`.
        What identifies a new run goes into `state`, and `save()` keeps it, as soon as it is known."""
        ...

    def metrics(self, records: list[tuple[str, int, dict[str, float], float | None]]) -> None:
        """Log (split, step, values, time) records, steps in order."""
        ...

    def event(self, record: dict[str, Any]) -> None: ...

    def close(self, outcome: str | None) -> None:
        """End the attempt: `outcome` is its end event (None: it ended without one)."""
        ...

    def attach_verdicts(self, state: dict[str, Any], spec: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
        """Add an audit's verdicts to the run `state` names (`spec`: its `[logging]` table); in the audit's process."""
        ...


def _make_tracker(key: str, files: RunFiles) -> Tracker:
    if key == "wandb":
        from expspec.runtime.runs.trackers_wandb import WandbTracker

        return WandbTracker(files)
    from expspec.runtime.runs.trackers_mlflow import MlflowTracker

    return MlflowTracker(files)


def read_state(files: RunFiles) -> dict[str, Any]:
    """trackers.json: the tracker runs this run directory logs to (empty when none yet or unreadable)."""
    try:
        state = json.loads(files.trackers.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(files: RunFiles, state: dict[str, Any]) -> None:
    write_atomic(files.trackers, [(json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8")])


class TrackerFeed:
    """The trackers of one attempt, each fed on its own background thread from the record files
    (a tracker that is slow to start or stuck holds neither the run nor the other tracker)."""

    def __init__(self, run: TrackedRun, trackers: list[Tracker], events: JsonLines) -> None:
        self.run, self._events = run, events
        self._state = read_state(run.files)
        self._state_lock = threading.Lock()
        self._notes: list[dict[str, Any]] = []
        self._notes_lock = threading.Lock()
        self._outcome: str | None = None
        self._closed = False
        self._lanes = [_Lane(tracker, self) for tracker in trackers]

    @classmethod
    def start(
        cls, plan: Plan, files: RunFiles, env: dict[str, Any], spec_dir: Path, start: int, events: JsonLines
    ) -> TrackerFeed | None:
        """The feed of the trackers `plan` asks for, started (None: it asks for none).
        `events` is the plain events file, where the feed's own notes go."""
        keys = [key for key in _MODULES if getattr(plan.spec.logging, key) is not None]
        if not keys:
            return None
        run = TrackedRun(files, plan.to_dict(), env, spec_dir, start)
        return cls(run, [_make_tracker(key, files) for key in keys], events)

    def tracked(self, records: JsonLines, kind: str) -> JsonLines:
        """`records` (the metrics or the events file) whose records also reach the trackers."""
        return _TrackedRecords(records, self, kind)

    # -- the training thread's side ---------------------------------------
    def put(self, kind: str, record: dict[str, Any]) -> None:
        if self._closed:
            return
        if kind == "events" and record.get("event") in ENDS:
            self._outcome = str(record["event"])
        for lane in self._lanes:
            lane.put((kind, record))

    def write_notes(self) -> None:
        """Write what the tracker threads reported to events.jsonl (on the caller's thread)."""
        with self._notes_lock:
            notes, self._notes = self._notes, []
        for note in notes:
            self._events.write(note)

    def close(self) -> None:
        """Let the trackers send what they hold (at most `CLOSE_S` in all), then record what went wrong."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + CLOSE_S
        for lane in self._lanes:
            lane.end(deadline)
        for lane in self._lanes:
            lane.join(deadline)
        self.write_notes()

    # -- for the lanes -------------------------------------------------------
    def note(self, event: Event, **fields: Any) -> None:
        with self._notes_lock:
            self._notes.append({"event": event, "time": time.time(), **fields})

    def entry(self, key: str) -> dict[str, Any]:
        """A copy of the tracker's entry in trackers.json, for its thread to fill."""
        with self._state_lock:
            entry = self._state.get(key)
            return dict(entry) if isinstance(entry, dict) else {}

    def save(self, key: str, entry: dict[str, Any]) -> None:
        """Keep `entry` as the tracker's in trackers.json (the others' as they are)."""
        with self._state_lock:
            self._state[key] = dict(entry)
            _write_state(self.run.files, self._state)


class _Lane:
    """One tracker, its queue and its thread."""

    def __init__(self, tracker: Tracker, feed: TrackerFeed) -> None:
        self.tracker, self.feed = tracker, feed
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
        self.dropped = 0
        self.failed = False
        self.thread = threading.Thread(target=self._work, name=f"expspec-{tracker.key}", daemon=True)
        self.thread.start()

    def put(self, item: tuple[str, dict[str, Any]]) -> None:
        if self.failed:
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:  # never wait: the record stays in its file
            self.dropped += 1
            if self.dropped == 1:
                self.feed.note(Event.TRACKER_DROPPED, tracker=self.tracker.key, step=item[1].get("step"))

    def end(self, deadline: float) -> None:
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:
                self.queue.put(_END, timeout=0.1)  # a full queue empties as the thread works
                return
            except queue.Full:
                continue

    def join(self, deadline: float) -> None:
        self.thread.join(max(0.0, deadline - time.monotonic()))
        key = self.tracker.key
        if self.thread.is_alive():
            self.feed.note(Event.TRACKER_ERROR, tracker=key, error=f"still sending after {CLOSE_S:.0f} s; left behind")
        if self.dropped:
            self.feed.note(Event.TRACKER_DROPPED, tracker=key, count=self.dropped, queue=QUEUE_SIZE)

    def _work(self) -> None:
        """Open, send what an earlier attempt left, then each batch as it comes; close at the end.
        The first failure is recorded and ends the lane: the queue then fills and drops."""
        tracker, feed = self.tracker, self.feed
        try:
            entry = feed.entry(tracker.key)
            held = tracker.open(feed.run, entry, partial(feed.save, tracker.key, entry))
            _send_earlier(tracker, feed.run, held)
            while True:
                batch = [self.queue.get()]
                while True:
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                _deliver(tracker, held, [item for item in batch if item is not _END])
                if any(item is _END for item in batch):
                    break
            tracker.close(feed._outcome)
        except Exception as err:  # any failure of a tracker is the tracker's, never the run's
            self.failed = True
            feed.note(Event.TRACKER_ERROR, tracker=tracker.key, error=f"{type(err).__name__}: {err}"[:2000])


def held_after(held: dict[str, int], step: int, values: dict[str, float]) -> dict[str, float]:
    """The values of `values` (at `step`) that a tracker holding `held` lacks."""
    default = held.get("*", -1)
    return {key: value for key, value in values.items() if step > held.get(key, default)}


def _deliver(tracker: Tracker, held: dict[str, int], items: list[tuple[str, dict[str, Any]]]) -> None:
    """Hand one batch to a tracker: the points it lacks, in order, and the events."""
    pending: list[tuple[str, int, dict[str, float], float | None]] = []
    for kind, record in items:
        if kind == "metrics":
            if not isinstance(record.get("step"), int):
                continue
            split, step, values = scalars(record)
            values = held_after(held, step, values)
            if values:
                pending.append((split, step, values, record.get("time")))
            continue
        if pending:
            tracker.metrics(pending)
            pending = []
        tracker.event(record)
    if pending:
        tracker.metrics(pending)


def _send_earlier(tracker: Tracker, run: TrackedRun, held: dict[str, int]) -> None:
    """Send the points of metrics.jsonl the tracker lacks that this attempt will not record
    again: up to the resume point (the latest record of each step, in step order). An attempt
    killed before its tracker caught up leaves these; so does a tracker added to the spec of a
    run already under way."""
    start = run.start
    if start <= 0 or held.get("*", -1) >= start:
        return
    latest: dict[tuple[str, int], tuple[str, int, dict[str, float], float | None]] = {}
    for record in iter_jsonl(run.files.metrics, ignore_damage):
        if not isinstance(record.get("step"), int) or record["step"] > start:
            continue
        split, step, values = scalars(record)
        values = held_after(held, step, values)
        if values:
            latest.pop((split, step), None)  # the latest copy, where it was recorded
            latest[(split, step)] = (split, step, values, record.get("time"))
    if latest:
        tracker.metrics(sorted(latest.values(), key=lambda entry: entry[1]))


class _TrackedRecords(JsonLines):
    """A record file whose records also go to the trackers (after the file: the view may lag, never lead)."""

    def __init__(self, records: JsonLines, feed: TrackerFeed, kind: str) -> None:
        self.path = records.path
        self._records, self._feed, self._kind = records, feed, kind

    def write(self, record: dict[str, Any]) -> None:
        self._records.write(record)
        self._feed.put(self._kind, record)
        self._feed.write_notes()

    def close(self) -> None:
        if self._kind == "events":  # the last of the record files the session closes
            self._feed.close()
        self._records.close()


def attach_verdicts(run_dir: Path, verdicts: list[dict[str, Any]]) -> list[str]:
    """Send `exp audit RUN_DIR`'s verdicts to the tracker runs of the run directory (those its
    plan asks for and trackers.json names); a line for each tracker that could not take them."""
    files = RunFiles(run_dir)
    if not verdicts:
        return []
    try:
        logging = json.loads(files.plan.read_text(encoding="utf-8"))["spec"]["logging"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    state = read_state(files)
    notes = []
    for key, module in _MODULES.items():
        entry = state.get(key)
        if not isinstance(logging, dict) or logging.get(key) is None or not isinstance(entry, dict) or not entry:
            continue
        if importlib.util.find_spec(module) is None:
            notes.append(f"{run_dir}: logging.{key}: {module} is not installed; the audit verdicts were not sent")
            continue
        try:
            _make_tracker(key, files).attach_verdicts(entry, logging[key], verdicts)
        except Exception as err:  # the audit's verdicts stand whatever the tracker does
            notes.append(f"{run_dir}: logging.{key}: could not send the audit verdicts ({type(err).__name__}: {err})")
    return notes
