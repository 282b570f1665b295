"""Scale-out on one machine, over virtual CPU devices: P12 and P13.

P12  steps/s of `exp run` with each batch split over 2, 4 and 8 devices of one
     process (`mesh.data=-1`) / on 1 device. The devices are virtual
     (`--xla_force_host_platform_device_count`): they share this machine's
     cores, so on a 2-core machine the ratios are what splitting costs (one
     program per device, the gradient all-reduce), not a speed-up.
P13  checkpoint saves with 4 devices laid out as a cluster of 2 processes x 2
     devices / as 1 process x 4 devices: the loop's wait per save (`blocked_s`
     of the `checkpoint_save` events), the slowdown per save measured from the
     step times, and the wall time of a whole run.

In a cluster the checkpoint's full hash is computed on the main thread: it
gathers the state across processes with a collective, which every process must
issue at the same point of its program. A single process hashes on a worker
thread while training goes on (see `runtime/engine/loop.py`, `save`). `blocked_s`
counts that hash in a cluster; the slowdown per save counts it either way.

Each side is a fresh run (in P13 a fresh cluster on a fresh loopback port);
sides alternate; steps [0, first) are untimed (compilation, warm-up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from common import DIGITS, TRANSFORMER, Row, median, rate_between, run_events, run_process, scratch, train_records
from throughput import Workload

from expspec.runtime.processes.child_command import exp_run_argv
from expspec.runtime.processes.local_cluster import free_port, member_env, xla_flags
from expspec.runtime.runs.run_files import Event

DEVICES = (1, 2, 4, 8)
CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_COORDINATOR_BIND_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def cores() -> int:
    return len(os.sched_getaffinity(0))


def _env(devices: int) -> dict[str, str]:
    """This process's environment with `devices` virtual CPU devices, outside any cluster."""
    base = {k: v for k, v in os.environ.items() if k not in CLUSTER_VARS}
    return {**base, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags(base.get("XLA_FLAGS", ""), devices)}


def _argv(spec: Path, run_dir: Path, overrides: Sequence[str]) -> list[str]:
    return exp_run_argv(spec, overrides, run_dir, quiet=True)


def run_one(spec: Path, run_dir: Path, overrides: Sequence[str], devices: int) -> float:
    """One fresh `exp run` process with `devices` devices; its wall time in seconds."""
    try:
        return run_process(_argv(spec, run_dir, overrides), env=_env(devices)).seconds
    except RuntimeError as err:  # `-q` sends XLA's own messages (an abort's reason) to the run's stderr.log
        raise RuntimeError(f"{err}\n{_native_stderr(run_dir)}") from None


def _native_stderr(run_dir: Path) -> str:
    logs = sorted(run_dir.glob("stderr*.log"))
    return "\n".join(f"{log.name}: {log.read_text(errors='replace').strip()[-2000:]}" for log in logs)


def run_cluster(spec: Path, run_dir: Path, overrides: Sequence[str], processes: int, devices: int) -> float:
    """`processes` fresh `exp run` processes of `devices` devices each, one cluster on a
    fresh loopback port, sharing `run_dir`; the seconds from the first start to the last exit."""
    port = free_port()
    members: list[tuple[subprocess.Popen[str], IO[str]]] = []
    start = time.perf_counter()
    try:
        for index in range(processes):
            err = tempfile.TemporaryFile("w+")  # a file, not a pipe: no member blocks on a full one
            argv = _argv(spec, run_dir, overrides)
            env = member_env(os.environ, port=port, processes=processes, process_id=index, devices=devices)
            members.append((subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True), err))
        deadline = start + 600
        # A member that fails leaves the others waiting in a collective: stop them at once.
        while any(m.poll() is None for m, _ in members) and not any(m.poll() for m, _ in members):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"a cluster of {processes} x {spec.name} ran past 600 s")
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        errors = []
        for index, (member, err) in enumerate(members):
            if member.poll() not in (None, 0):
                err.seek(0)
                errors.append(f"process {index} exited {member.returncode}: {err.read().strip()[-2000:]}")
        if errors:
            errors.append(_native_stderr(run_dir))
    finally:
        for member, err in members:
            if member.poll() is None:
                member.kill()
                member.wait()
            err.close()
    if errors:
        raise RuntimeError("; ".join(errors))
    return seconds


# P12: steps/s over 1, 2, 4 and 8 devices of one process.


def workloads(quick: bool) -> list[Workload]:
    digits = Workload("digits MLP", DIGITS, 100 if quick else 200, 500 if quick else 2000, 10)
    if quick:
        # The char transformer takes ~15 s to start on 2 cores, 4 counts x 2 repeats
        # of it would not fit the quick budget: it is measured in full mode only.
        return [digits]
    return [digits, Workload("char transformer", TRANSFORMER, 5, 55, 5)]


def measure_devices(quick: bool, repeats: int) -> list[Row]:
    rows: list[Row] = []
    n_cores = cores()
    for w in workloads(quick):
        rates: dict[int, list[float]] = {n: [] for n in DEVICES}
        with scratch("devices") as work:
            for i in range(repeats):
                for n in DEVICES:
                    run_dir = work / f"{n}-{i}"
                    run_one(w.spec, run_dir, w.overrides("checkpoint.enabled=false", "mesh.data=-1"), n)
                    rates[n].append(rate_between(train_records(run_dir), w.first, w.last))
        base = median(rates[1])
        for n in DEVICES[1:]:
            value = median(rates[n])
            notes = {
                "steps": f"({w.first}, {w.last}]",
                "repeats": repeats,
                "cores": n_cores,
                "reading": "devices share the cores: overhead of splitting"
                if n > n_cores
                else "one core per device at most",
            }
            measure = f"{w.name} steps/s, {n} devices / 1, {n_cores} cores"
            rows.append(Row("P12", measure, value, base, "steps/s", value / base, "-", None, notes))
    print(
        f"[P12: {n_cores} cores; virtual devices beyond {n_cores} share them, "
        "so these ratios show what splitting costs, not a speed-up]",
        file=sys.stderr,
        flush=True,
    )
    return rows


# P13: checkpoint saves, 1 process x 4 devices against 2 processes x 2 devices.

EVERY, FIRST, STEPS = 20, 5, 130  # steps, not exit codes
"""Saves after steps 20, 40, ..., 120 fall inside the window (5, 130]; the final one comes after it."""
SAVING = (
    "train.eval_every=0",
    "train.log_every=1",
    f"train.steps={STEPS}",
    f"checkpoint.every_steps={EVERY}",
    "mesh.data=-1",
)
LAYOUTS = {"single": (1, 4), "multi": (2, 2)}
"""(processes, devices per process): the same global mesh of 4 devices."""


def _blocked(run_dir: Path) -> list[float]:
    events = run_events(run_dir)
    return [e["blocked_s"] for e in events if e["event"] == Event.CHECKPOINT_SAVE and e["step"] < STEPS]


def _interval_and_slowdown(run_dir: Path) -> tuple[float, float]:
    """The median step interval in the window, and its wall time beyond that per save."""
    at = {r["step"]: r["time"] for r in train_records(run_dir)}
    typical = median([at[s + 1] - at[s] for s in range(FIRST, STEPS)])
    saves = len(range(EVERY, STEPS, EVERY))
    return typical, (at[STEPS] - at[FIRST] - (STEPS - FIRST) * typical) / saves


def measure_checkpoints(repeats: int) -> list[Row]:
    blocked: dict[str, list[float]] = {k: [] for k in LAYOUTS}
    slowdown: dict[str, list[float]] = {k: [] for k in LAYOUTS}
    interval: dict[str, list[float]] = {k: [] for k in LAYOUTS}
    wall: dict[str, list[float]] = {k: [] for k in LAYOUTS}
    with scratch("cluster-save") as work:
        for i in range(repeats):
            for name, (processes, devices) in LAYOUTS.items():
                run_dir = work / f"{name}-{i}"
                if processes == 1:
                    seconds = run_one(DIGITS, run_dir, SAVING, devices)
                else:
                    seconds = run_cluster(DIGITS, run_dir, SAVING, processes, devices)
                wall[name].append(seconds)
                blocked[name].extend(_blocked(run_dir))
                step, slow = _interval_and_slowdown(run_dir)
                interval[name].append(step)
                slowdown[name].append(slow)
    m = {k: {"blocked": median(blocked[k]), "slow": median(slowdown[k]), "wall": median(wall[k])} for k in LAYOUTS}
    notes = {
        "layouts": "2 processes x 2 devices / 1 process x 4 devices",
        "runs_per_layout": repeats,
        "saves_per_run": len(range(EVERY, STEPS, EVERY)),
        "step_interval_multi_s": median(interval["multi"]),
        "step_interval_single_s": median(interval["single"]),
        "cores": cores(),
    }
    label = "2 procs x 2 dev / 1 x 4"
    rows = []
    for key, measure in (
        ("blocked", f"loop blocked per save, {label}"),
        ("slow", f"slowdown per save, {label}"),
        ("wall", f"wall time per run, {label}"),
    ):
        value, base = m["multi"][key], m["single"][key]
        rows.append(Row("P13", measure, value, base, "s", value / base, "-", None, notes))
    return rows
