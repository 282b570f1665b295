"""The Weights & Biases side of the trackers (`[logging] wandb`); runs on the tracker thread.

One W&B run per run directory: its id is chosen here and kept in trackers.json
before W&B hears of it, and every attempt resumes it (`resume="allow"`). W&B's
step is the training step, so a point sits where `metrics.jsonl` puts it. W&B
keeps a run's steps increasing; what a resumed attempt must not send again is
what the run already holds: online, the step W&B says the resumed run starts at;
offline, the history written in the earlier attempts' run folders (their
`.wandb` files, which `wandb sync` uploads as one run).
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from expspec.runtime.runs.run_files import WANDB, RunFiles
from expspec.runtime.runs.trackers import TrackedRun

__all__ = ["WandbTracker", "logged_steps"]

_BLOCK = 32 * 1024
"""The `.wandb` file's framing: LevelDB's log format, 32 KiB blocks after a 7-byte file header."""
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_NOT_SHOWN = frozenset({"event", "time", "traceback"})


def _settings(wandb: Any) -> Any:
    # Nothing on the terminal and no wrapping of stdout (`exp run --json` writes there).
    return wandb.Settings(silent=True, console="off", disable_git=True, save_code=False, disable_job_creation=True)


def _records(path: Path) -> Iterator[bytes]:
    """The records of one `.wandb` file, up to a record a kill tore."""
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path}: not a W&B run file")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # a block's tail too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 or pos + _HEADER + length > len(data):
            return
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk


def logged_steps(folder: Path, run_id: str) -> dict[str, int]:
    """The last step of each metric the offline run folders of `run_id` under `folder` hold."""
    from wandb.proto import wandb_internal_pb2

    held: dict[str, int] = {}
    for path in sorted(folder.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for raw in _records(path):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(raw)
            except Exception:  # a record cut by a kill: nothing after it was written
                break
            if record.WhichOneof("record_type") != "history":
                continue
            step = record.history.step.num
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):  # W&B's own (`_step`, `_runtime`)
                    held[key] = max(held.get(key, -1), step)
    return held


class WandbTracker:
    """A W&B run continued by every attempt of one run directory."""

    key = "wandb"

    def __init__(self, files: RunFiles) -> None:
        self.files = files
        self._run: Any = None

    def _init(self, wandb: Any, state: dict[str, Any], mode: str, name: str | None, **extra: Any) -> Any:
        return wandb.init(
            project=state["project"],
            entity=state.get("entity"),
            id=state["id"],
            resume="allow",
            mode=mode,
            name=name,
            dir=state["dir"],
            settings=_settings(wandb),
            **extra,
        )

    def open(self, run: TrackedRun, state: dict[str, Any], save: Callable[[], None]) -> dict[str, int]:
        import wandb

        spec = run.logging["wandb"]
        if not state.get("id"):
            state.update(
                id=uuid.uuid4().hex[:12],
                project=spec["project"] or run.plan["spec"]["name"],
                entity=spec["entity"],
                dir=str(Path(os.environ.get("WANDB_DIR") or run.files.root).absolute()),
            )
            save()  # before W&B hears of it: an attempt killed from here on is continued
        folder = Path(state["dir"]) / WANDB
        held = logged_steps(folder, state["id"]) if spec["mode"] == "offline" and folder.is_dir() else {}
        tags = run.tags
        short = [
            f"trajectory:{tags['trajectory'][:16]}",
            f"spec:{tags['spec'][:16]}",
            f"env:{tags['environment_class']}",
        ]
        self._run = self._init(
            wandb,
            state,
            spec["mode"],
            spec["name"] or run.files.root.absolute().name,
            group=spec["group"],
            tags=[*short, *spec["tags"]],
        )
        if self._run.resumed and spec["mode"] == "online":
            held = {"*": self._run.starting_step - 1}  # W&B refuses steps before it anyway
        config = {key: value for key, value in run.plan.items() if key != "fields"}
        self._run.config.update({**config, "environment": run.env["class"]}, allow_val_change=True)
        self._run.summary.update({f"expspec/{name}": value for name, value in tags.items()})
        self._run.summary["expspec/run_dir"] = str(run.files.root.absolute())
        return held

    def metrics(self, records: list[tuple[str, int, dict[str, float], float | None]]) -> None:
        for _, step, values, _ in records:
            self._run.log(values, step=step)

    def event(self, record: dict[str, Any]) -> None:
        fields = {key: value for key, value in record.items() if key not in _NOT_SHOWN}
        self._run.summary[f"events/{record.get('event')}"] = fields

    def close(self, outcome: str | None) -> None:
        self._run.summary["expspec/outcome"] = outcome or "unended"
        if outcome == "preempted":
            self._run.mark_preempting()  # shown as preempted, to be resumed
        self._run.finish(exit_code=0 if outcome in ("finished", "stopped", "preempted") else 1)

    def attach_verdicts(self, state: dict[str, Any], spec: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
        import wandb

        run = self._init(wandb, state, spec["mode"], None)
        try:
            for verdict in verdicts:
                check = verdict["check"]
                run.summary[f"audit/{check}"] = verdict["status"]
                run.summary[f"audit/{check}/summary"] = verdict["summary"]
        finally:
            run.finish()
