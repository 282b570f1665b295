"""`exp runs`: real runs, finished, killed, preempted, failed and running, listed without a change."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

from tests.cli.test_cli import JAX_FAMILY, imported_modules
from tests.conftest import EXAMPLES, run_exp
from tests.runtime.runs import DIGITS, exp, kill, run_json, snapshot, start, wait_for_step

LONG = ("train.steps=100000",)


def listed(folder: Path) -> dict[str, dict]:
    result = run_exp("runs", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    return {run["name"]: run for run in json.loads(result.stdout)["runs"]}


def test_a_finished_and_audited_run_is_done_and_listing_changes_nothing(tmp_path):
    run_dir = tmp_path / "runs" / "digits"
    run_json(str(DIGITS), "train.steps=3", "--run-dir", str(run_dir))
    audit = exp("audit", str(run_dir))
    assert audit.returncode == 0, audit.stderr
    [verdict] = [json.loads(line) for line in (run_dir / "audits.jsonl").read_text().splitlines()]
    assert verdict["check"] == "integrity" and verdict["status"] == "passed" and verdict["summary"]
    recorded = (run_dir / "audits.jsonl").read_bytes()
    assert exp("audit", str(run_dir), "--segment", "0:2").returncode == 2  # no checkpoint at 0: bad input
    assert (run_dir / "audits.jsonl").read_bytes() == recorded
    # A metrics line torn by a kill: skipped, never repaired by a reader.
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as metrics:
        metrics.write('{"step": 99, "split": "train", "lo')
    before = snapshot(tmp_path)

    run = listed(tmp_path / "runs")["digits"]
    assert run["status"] == "done" and (run["step"], run["total"]) == (3, 3)
    assert run["loss"] > 0 and set(run["eval"]) == {"accuracy", "loss"} and run["eval_step"] == 3
    assert run["audit"]["check"] == "integrity" and run["audit"]["status"] == "passed"
    plan = json.loads((run_dir / "plan.json").read_text())
    assert run["trajectory"] == plan["fingerprints"]["trajectory"] and run["experiment"] == "digits-mlp"

    human = run_exp("runs", str(tmp_path / "runs"))
    assert human.returncode == 0 and human.stdout == ""
    row = next(line for line in human.stderr.splitlines() if line.startswith("digits"))
    assert (
        "done" in row and "3/3" in row and "integrity passed" in row and plan["fingerprints"]["trajectory"][:12] in row
    )
    assert not set(JAX_FAMILY) & imported_modules("-m", "expspec", "runs", str(tmp_path / "runs"))
    assert snapshot(tmp_path) == before


def test_a_running_run_then_killed_is_not_running(tmp_path):
    run_dir = tmp_path / "killed"
    proc = start(str(DIGITS), *LONG, "--run-dir", str(run_dir))
    try:
        wait_for_step(run_dir, 3, proc)
        run = listed(tmp_path)["killed"]
        assert run["status"] == "running" and f"pid {proc.pid}" in run["detail"]
        assert run["step"] >= 3 and run["total"] == 100000
    finally:
        kill(proc, signal.SIGKILL)
    assert json.loads((run_dir / "LOCK").read_text())["pid"] == proc.pid  # stale: left by the dead process
    run = listed(tmp_path)["killed"]
    assert run["status"] == "killed" and "without recording an end" in run["detail"]
    human = run_exp("runs", str(tmp_path))
    assert "killed" in human.stderr and "running" not in human.stderr


def test_a_preempted_run_is_preempted(tmp_path):
    run_dir = tmp_path / "preempted"
    proc = start(str(DIGITS), *LONG, "--run-dir", str(run_dir))
    wait_for_step(run_dir, 3, proc)
    assert kill(proc, signal.SIGTERM) == 75
    run = listed(tmp_path)["preempted"]
    assert run["status"] == "preempted" and "SIGTERM" in run["detail"] and run["step"] >= 3


def test_a_run_whose_data_raises_is_failed(tmp_path):
    shutil.copytree(EXAMPLES / "custom", tmp_path / "custom")
    (tmp_path / "custom" / "lab" / "broken.py").write_text(
        "from lab.data import make_sines\n\n\n"
        "def make(seed, batch_size, **args):\n"
        "    source = make_sines(seed, batch_size, **args)\n"
        "    batch = source.train_batch\n"
        "    source.train_batch = lambda step: batch(step) if step < 5 else 1 / 0\n"
        "    return source\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "runs" / "broken"
    spec = tmp_path / "custom" / "sines.toml"
    target = 'data.target="lab.broken:make"'
    failed = exp("run", str(spec), target, "--run-dir", str(run_dir), "--allow-import", "lab", "-q")
    assert failed.returncode == 3, failed.stderr
    run = listed(tmp_path / "runs")["broken"]
    assert run["status"] == "failed" and "ZeroDivisionError" in run["detail"]


def test_bad_folder_exits_2_and_an_empty_one_lists_nothing(tmp_path):
    missing = run_exp("runs", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"{tmp_path / 'nowhere'}: no such directory"
    assert not (tmp_path / "nowhere").exists()
    assert listed(tmp_path) == {}


def _recorded(folder: Path, events: list[dict]) -> None:
    """A run directory's records as an attempt of 6 steps leaves them (no JAX needed to read them)."""
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text(json.dumps({"spec": {"name": "t", "train": {"steps": 6}}}))
    steps = [{"kind": "step", "step": s, "params": "0", "opt": "0", "leaves": "", "attempt": 0} for s in range(7)]
    (folder / "ledger.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    (folder / "events.jsonl").write_text("".join(json.dumps({"time": 1.0, **e}) + "\n" for e in events))


def test_a_run_ended_after_its_last_step_without_its_finished_record_is_not_done(tmp_path):
    begin = {"event": "start", "step": 0}
    _recorded(tmp_path / "killed", [begin])
    _recorded(tmp_path / "preempted", [begin, {"event": "preempted", "step": 6, "signal": "SIGTERM"}])
    _recorded(tmp_path / "finished", [begin, {"event": "finished", "step": 6}])
    runs = listed(tmp_path)
    assert runs["killed"]["status"] == "killed" and runs["preempted"]["status"] == "preempted"
    for name in ("killed", "preempted"):
        assert (runs[name]["step"], runs[name]["total"]) == (6, 6)
        assert runs[name]["detail"].endswith("run again to finish"), runs[name]["detail"]
        assert "at step 6/6" in runs[name]["detail"]
    assert "SIGTERM" in runs["preempted"]["detail"]
    assert runs["finished"]["status"] == "done" and runs["finished"]["detail"] is None
    human = run_exp("runs", str(tmp_path)).stderr
    assert "killed: ended at step 6/6 without recording its end" in human, human
