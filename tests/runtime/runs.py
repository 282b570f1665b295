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


def ledger_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of the ledger, of every kind, in file order.

    A torn last line (a kill cut it and no attempt has repaired it yet) is not a
    record and is skipped; any other line that does not parse fails loudly.
    """
    lines = (run_dir / "ledger.jsonl").read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise
    return records


def checkpoint_hashes(run_dir: Path, ledger_name: str = "ledger.jsonl") -> dict[int, str]:
    """step -> full hash of each checkpoint the ledger (of one cluster member: `ledger_name`) records."""
    out = {}
    for line in (run_dir / ledger_name).read_text().splitlines():
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


# -- where each attempt began and what it trained (resume tests must prove a resume) --


def _whole_records(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of `path` (a killed writer may leave its last line torn)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def events(run_dir: Path) -> list[dict[str, Any]]:
    """Every whole event of `run_dir`, in order."""
    return _whole_records(run_dir / "events.jsonl")


def beginnings(run_dir: Path) -> list[tuple[str, int]]:
    """("start" or "resume", step) for each attempt, in order: where each attempt took up training."""
    return [(e["event"], e["step"]) for e in events(run_dir) if e["event"] in ("start", "resume")]


def trained_steps(run_dir: Path, attempt: int) -> list[int]:
    """The steps that `attempt` trained, from its ledger records (step 0, the initial state, is not one)."""
    records = _whole_records(run_dir / "ledger.jsonl")
    return sorted(r["step"] for r in records if r["kind"] == "step" and r["attempt"] == attempt and r["step"] > 0)


def committed_checkpoints(run_dir: Path) -> list[int]:
    """Steps whose checkpoint Orbax committed (its folder holds commit_success.txt), oldest first."""
    folder = run_dir / "checkpoints"
    found = folder.glob("*/commit_success.txt") if folder.is_dir() else []
    return sorted(int(p.parent.name) for p in found if p.parent.name.isdigit())


def wait_for_commit(run_dir: Path, step: int, proc: subprocess.Popen[str], timeout: float = 120) -> int:
    """Block until a checkpoint at `step` or later has committed; the newest committed step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        committed = committed_checkpoints(run_dir)
        if committed and committed[-1] >= step:
            return committed[-1]
        time.sleep(0.01)
    raise TimeoutError(f"{run_dir}: no checkpoint at step {step} or later committed")
