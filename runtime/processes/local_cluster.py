"""A JAX cluster of `exp run` processes on this machine, for development and tests.

The launcher starts, watches and stops processes (runtime/processes/supervision.py); it
never trains. Each member joins the cluster through the environment variables
`exp run` reads (runtime/processes/cluster.py). No JAX here: `exp launch --help` stays
instant and a refused launch costs nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expspec.errors import BadInput
from expspec.exit_codes import ExitCode
from expspec.runtime.processes.child_command import exp_run_argv
from expspec.runtime.processes.execute import first_missing
from expspec.runtime.processes.supervision import GRACE_S, Echo, Member, Outcome, supervise
from expspec.runtime.runs.run_files import RunFiles
from expspec.runtime.runs.rundir import write_json_atomic

__all__ = [
    "DEVICE_COUNT_FLAG",
    "LaunchOptions",
    "LaunchRefused",
    "LaunchResult",
    "free_port",
    "launch",
    "member_argv",
    "member_env",
    "xla_flags",
]

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


class LaunchRefused(BadInput):
    """The launch cannot start (its run directory cannot be created)."""


def free_port() -> int:
    """A loopback TCP port nothing listened on a moment ago; a fresh one for each
    cluster, so a new coordinator never meets an old cluster's members."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def xla_flags(inherited: str, devices: int) -> str:
    """`inherited` XLA flags with the host device count set to `devices` (any earlier
    count replaced, since XLA would take the last one and the caller asked for this one)."""
    kept = [f for f in inherited.split() if f.split("=", 1)[0] != DEVICE_COUNT_FLAG]
    return " ".join([*kept, f"{DEVICE_COUNT_FLAG}={devices}"])


def member_env(base: Mapping[str, str], *, port: int, processes: int, process_id: int, devices: int) -> dict[str, str]:
    """The environment of member `process_id`: `base` plus the cluster's variables."""
    address = f"127.0.0.1:{port}"
    return {
        **base,
        "JAX_COORDINATOR_ADDRESS": address,
        # Without it JAX's coordinator listens on every interface.
        "JAX_COORDINATOR_BIND_ADDRESS": address,
        "JAX_NUM_PROCESSES": str(processes),
        "JAX_PROCESS_ID": str(process_id),
        # Virtual CPU devices: an accelerator would be shared by every member.
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": xla_flags(base.get("XLA_FLAGS", ""), devices),
        # A member whose launcher is killed has no one to stop it: it ends too.
        "EXP_LAUNCHER_PID": str(os.getpid()),
    }


@dataclass(frozen=True)
class LaunchOptions:
    spec: Path
    run_dir: Path
    processes: int
    devices_per_process: int = 1
    overrides: tuple[str, ...] = ()
    stop_at: int | None = None
    allow_imports: tuple[str, ...] = ()
    as_json: bool = False
    grace_s: float = GRACE_S


def member_argv(options: LaunchOptions, process_id: int) -> list[str]:
    """The `exp run` command of member `process_id`; only process 0 talks to the terminal."""
    return exp_run_argv(
        options.spec,
        options.overrides,
        options.run_dir,
        stop_at=options.stop_at,
        allow_imports=options.allow_imports,
        json=options.as_json and process_id == 0,
        quiet=process_id > 0,
    )


@dataclass(frozen=True)
class LaunchResult:
    run_dir: Path
    port: int
    outcome: Outcome

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    def report(self) -> list[str]:
        """Lines for people: one per failure, then what to do next (nothing when all finished)."""
        outcome = self.outcome
        lines = [failure.describe() for failure in outcome.failures]
        if outcome.stopped and outcome.failures:
            lines.append(f"stopped the other processes ({', '.join(map(str, outcome.stopped))}) with SIGKILL")
        if outcome.unstarted and not outcome.interrupted:
            # Members wait for each other to join: a cluster that never formed trained nothing.
            started = f"; stopped the {len(outcome.stopped)} started before they joined" if outcome.stopped else ""
            lines.append(f"preempted by {outcome.signal} before the cluster started{started}: nothing new to save")
        if outcome.interrupted:
            lines.append("interrupted twice: killed every process without saving")
        # A failure of input (exit 2) or of an import (1) would only fail again.
        if self.exit_code in (ExitCode.RUN_FAILED, ExitCode.PREEMPTED, ExitCode.INTERRUPTED):
            lines.append("relaunch the same command to resume from the last checkpoint")
        return lines


def launch(options: LaunchOptions, echo: Echo | None = None) -> LaunchResult:
    """Start the cluster in `options.run_dir`, supervise it to the end, and say how it ended.

    Writes `launch.json` (port, sizes, member pids) before waiting, so that users
    and tests can find the members; members > 0 print to `launch/process-<i>.out`.
    """
    created = first_missing(options.run_dir.absolute())
    outputs = options.run_dir / "launch"
    try:
        outputs.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LaunchRefused(f"cannot create {outputs}: {err.strerror or err}") from None
    port = free_port()
    members = [
        Member(
            argv=member_argv(options, i),
            env=member_env(
                os.environ, port=port, processes=options.processes, process_id=i, devices=options.devices_per_process
            ),
            output=None if i == 0 else outputs / f"process-{i}.out",
            signals_blocked=True,
        )
        for i in range(options.processes)
    ]
    record: dict[str, Any] = {
        "port": port,
        "processes": options.processes,
        "devices_per_process": options.devices_per_process,
        "launcher_pid": os.getpid(),
    }
    launch_file = RunFiles(options.run_dir).launch

    def started(pids: list[int]) -> None:
        record["pids"] = pids
        write_json_atomic(launch_file, record)

    outcome = supervise(members, grace_s=options.grace_s, echo=echo, on_started=started)
    if created is not None and (outcome.exit_code == ExitCode.BAD_INPUT or outcome.unstarted):
        # Bad input, or a preemption before the cluster formed: nothing behind, as with `exp run`.
        shutil.rmtree(created, ignore_errors=True)
    elif launch_file.exists():
        write_json_atomic(launch_file, {**record, "returncodes": outcome.returncodes, "exit_code": outcome.exit_code})
    return LaunchResult(run_dir=options.run_dir, port=port, outcome=outcome)
