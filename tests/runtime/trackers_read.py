"""Helpers for the tracker tests: specs that log to W&B (offline) and MLflow (a file store) in
a temporary folder, and what the trackers hold, read back from their own files.

The W&B reader is written here from the file format (LevelDB's log framing around W&B's
protobuf records), apart from the one expspec uses, so a bug in that one cannot hide here.
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLES

TINY = ("train.steps=12", "train.log_every=2", "train.eval_every=4", "model.hidden=[16]")


def tracker_env(tmp_path: Path) -> dict[str, str]:
    """W&B's settings, cache and data folders inside the test's own (never the user's)."""
    return {
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_SILENT": "true",
    }


def tracked_spec(folder: Path, logging: str) -> Path:
    """The digits example (and the base it extends) copied into `folder`, extended by a spec whose
    `[logging]` table is `logging` (TOML lines)."""
    for name in ("base.toml", "digits_mlp.toml"):
        shutil.copy(EXAMPLES / name, folder / name)
    spec = folder / "tracked.toml"
    spec.write_text(f'extends = "digits_mlp.toml"\n\n[logging]\n{logging}\n', encoding="utf-8")
    return spec


def metrics_points(run_dir: Path) -> dict[tuple[str, int], float]:
    """(`<split>/<name>`, step) -> value for every number of metrics.jsonl (the latest record of a step)."""
    points = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for name, value in record.items():
            if name not in ("split", "step", "time") and isinstance(value, int | float):
                points[(f"{record['split']}/{name}", record["step"])] = float(value)
    return points


# -- W&B ---------------------------------------------------------------------
def _wandb_records(path: Path) -> list[bytes]:
    block, header = 32 * 1024, 7
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, pending, out = header, b"", []
    while pos + header <= len(data):
        if block - pos % block < header:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        if kind == 0 or pos + header + length > len(data):
            break
        chunk = data[pos + header : pos + header + length]
        pos += header + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            out.append(pending + chunk)
    return out


@dataclass
class WandbSegment:
    """One attempt's offline run folder: what it recorded."""

    run_id: str
    project: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    """(step, {key: value}) per history row, keys without W&B's own `_` ones."""
    summary: dict[str, Any] = field(default_factory=dict)
    """The summary keys set, the latest value of each."""


def wandb_segments(run_dir: Path) -> list[WandbSegment]:
    """Every offline run folder under `run_dir/wandb`, oldest first."""
    from wandb.proto import wandb_internal_pb2

    segments = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        (path,) = folder.glob("run-*.wandb")
        segment = WandbSegment(run_id=path.stem.removeprefix("run-"))
        for raw in _wandb_records(path):
            record = wandb_internal_pb2.Record.FromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                segment.run_id, segment.project = record.run.run_id, record.run.project
                segment.tags = list(record.run.tags)
                for item in record.run.config.update:
                    segment.config[item.key] = json.loads(item.value_json)
            elif kind == "config":
                for item in record.config.update:
                    segment.config[item.key] = json.loads(item.value_json)
            elif kind == "history":
                items = ((i.key or "/".join(i.nested_key), i.value_json) for i in record.history.item)
                row = {key: json.loads(value) for key, value in items if not key.startswith("_")}
                segment.history.append((record.history.step.num, row))
            elif kind == "summary":
                for item in record.summary.update:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        segment.summary[key] = json.loads(item.value_json)
        segments.append(segment)
    return segments


def wandb_points(segments: list[WandbSegment]) -> list[tuple[str, int, float]]:
    """Every (key, step, value) the history rows of all segments hold, duplicates kept."""
    return [(key, step, value) for s in segments for step, row in s.history for key, value in row.items()]


# -- MLflow ------------------------------------------------------------------
def mlflow_client(store: Path) -> Any:
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=store.as_uri())


def mlflow_points(client: Any, run_id: str) -> list[tuple[str, int, float]]:
    """Every (key, step, value) the run's metric histories hold, duplicates kept."""
    run = client.get_run(run_id)
    return [(key, m.step, m.value) for key in run.data.metrics for m in client.get_metric_history(run_id, key)]
