"""`[logging] tensorboard = true`: event files whose scalars are the records of metrics.jsonl."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.runs import DIGITS, exp

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")

TINY = ("train.steps=6", "train.log_every=2", "train.eval_every=3", "logging.tensorboard=true")


def read_events(folder: Path) -> list[list[object]]:
    """Each event file (oldest first) as its events, parsed from the TFRecord framing:
    length (u64), its CRC (u32), the serialized Event, the data's CRC (u32)."""
    files = sorted(folder.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns)
    out = []
    for path in files:
        data, pos, events = path.read_bytes(), 0, []
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            events.append(event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length]))
            pos += 12 + length + 4
        out.append(events)
    return out


def test_scalars_match_metrics_jsonl_across_a_resume(tmp_path):
    run_dir = tmp_path / "run"
    first = exp("run", str(DIGITS), *TINY, "--run-dir", str(run_dir), "--stop-at", "4", "-q")
    assert first.returncode == 0, first.stderr
    second = exp("run", str(DIGITS), *TINY, "--run-dir", str(run_dir), "-q")
    assert second.returncode == 0, second.stderr

    attempts = read_events(run_dir / "tensorboard")
    assert len(attempts) == 2  # one event file per attempt
    # The resumed attempt hides whatever an earlier one recorded after its checkpoint at 4.
    purge = [e for e in attempts[1] if e.HasField("session_log")]
    assert [(e.step, e.session_log.status) for e in purge] == [(5, event_pb2.SessionLog.START)]

    scalars: dict[tuple[str, int], float] = {}
    for events in attempts:
        for event in events:
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    expected = {
        (f"{r['split']}/{name}", r["step"]): value
        for r in records
        for name, value in r.items()
        if name not in ("split", "step", "time")
    }
    assert {("train/loss", 2), ("train/loss", 4), ("train/loss", 6), ("eval/accuracy", 3), ("eval/loss", 6)} <= set(
        expected
    )
    assert scalars.keys() == expected.keys()
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6), key  # event files hold float32


def test_without_tensorboardx_the_run_is_refused_before_it_starts(tmp_path):
    # As if tensorboardX were not installed: an import of it fails, and find_spec finds nothing.
    code = "import sys; sys.modules['tensorboardX'] = None; sys.argv[0] = 'exp'; from expspec.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-P", "-c", code, "run", str(DIGITS), *TINY, "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{DIGITS}: logging.tensorboard: ")
    assert "pip install 'expspec[tensorboard]'" in lines[0]
    assert list(tmp_path.iterdir()) == []
