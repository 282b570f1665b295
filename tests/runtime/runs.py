"""Helpers for tests that drive `exp run` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLES, ROOT

EXP = str(Path(sys.executable).with_name("exp"))

DIGITS = EXAMPLES / "digits_mlp.toml"
TRANSFORMER = EXAMPLES / "char_transformer.toml"
LORA = EXAMPLES / "lora_finetune.toml"

SMALL_TRANSFORMER = (
    "model.layers=1",
    "model.d_model=32",
    "model.heads=2",
    "model.d_ff=64",
    "model.max_len=32",
    "data.seq_len=32",
    "data.batch_size=8",
)
"""Overrides that shrink the character transformer to seconds per run."""


def exp(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXP, *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_json(*args: str, **kwargs: Any) -> dict[str, Any]:
    """`exp run ... --json -q`; the summary, asserting success."""
    result = exp("run", *args, "--json", "-q", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ledger(run_dir: Path) -> dict[int, tuple[str, str, str]]:
    """step -> (params, opt, leaves) fingerprints; every attempt's record of a step must agree."""
    steps: dict[int, tuple[str, str, str]] = {}
    for line in (run_dir / "ledger.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] != "step":
            continue
        entry = (record["params"], record["opt"], record["leaves"])
        assert steps.setdefault(record["step"], entry) == entry, f"step {record['step']} recorded twice, differently"
    return steps


def checkpoint_hashes(run_dir: Path) -> dict[int, str]:
    out = {}
    for line in (run_dir / "ledger.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "checkpoint":
            out[record["step"]] = record["full_hash"]
    return out


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [EXP, "run", *args, "-q"],
        cwd=cwd or ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Block until the ledger of `run_dir` has reached `step`."""
    deadline = time.monotonic() + timeout
    path = run_dir / "ledger.jsonl"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists():
            lines = path.read_text().splitlines()
            steps = [json.loads(line)["step"] for line in lines if line.endswith("}") and '"kind":"step"' in line]
            if steps and max(steps) >= step:
                return
        time.sleep(0.02)
    raise TimeoutError(f"{run_dir} did not reach step {step}")


def kill(proc: subprocess.Popen[str], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return proc.returncode


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder` with its mtime and bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
