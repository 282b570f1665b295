"""`exp run` inside a JAX cluster: who joins, what each process writes, and a
SIGTERM to one member that every member honours at the same step."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from expspec.runtime.processes.cluster import Cluster, ClusterError, requested_cluster
from tests.runtime.runs import DIGITS, EXP, ROOT, exp

ARGS = (str(DIGITS), "train.steps=100", "checkpoint.every_steps=20", "train.eval_every=0", "mesh.data=-1")


def test_a_cluster_is_joined_only_when_the_environment_asks():
    assert requested_cluster({}) is None
    explicit = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert requested_cluster(explicit) == "explicit"
    assert requested_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) == "slurm"
    assert requested_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None  # one task: nothing to join
    assert requested_cluster({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "2"}) == "ompi"


@pytest.mark.parametrize(
    "env, named",
    [
        ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"}, "JAX_NUM_PROCESSES"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "JAX_PROCESS_ID"),
    ],
)
def test_incomplete_cluster_variables_are_named(env, named):
    with pytest.raises(ClusterError, match=named):
        requested_cluster(env)


def test_each_process_owns_its_ledger_and_lock():
    assert Cluster(0, 2).own("ledger.jsonl") == "ledger.jsonl"
    assert Cluster(1, 2).own("ledger.jsonl") == "ledger.process-1.jsonl"
    assert Cluster(3, 4).own("LOCK") == "LOCK.process-3"


def test_bad_cluster_variables_exit_2_before_anything_is_written(tmp_path):
    env = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "5"}
    result = exp("run", *ARGS, "--run-dir", str(tmp_path / "run"), "-q", env=env)
    assert result.returncode == 2, result.stderr
    assert "JAX_PROCESS_ID" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What only `exp launch` sets: a scheduler sets none of it, so the members must not need it.
_LAUNCHER_ONLY = ("JAX_COORDINATOR_BIND_ADDRESS", "EXP_LAUNCHER_PID")


def _cluster(run_dir, processes=2, devices=2, args=ARGS) -> list[subprocess.Popen[str]]:
    """A cluster started by hand, as a scheduler would, without `exp launch` or its helpers:
    each member gets the coordinator, the process count and its index, and its devices."""
    port = _free_port()
    inherited = {name: value for name, value in os.environ.items() if name not in _LAUNCHER_ONLY}
    members = []
    for index in range(processes):
        env = {
            **inherited,
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": str(processes),
            "JAX_PROCESS_ID": str(index),
            # A CPU job: each member gets its own virtual devices.
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        }
        command = [EXP, "run", *args, "--run-dir", str(run_dir), "--json", "-q"]
        members.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    return members


def _results(members) -> list[tuple[int, dict]]:
    out = []
    for member in members:
        stdout, stderr = member.communicate(timeout=300)
        assert stdout.strip(), stderr
        out.append((member.returncode, json.loads(stdout)))
    return out


def _ledger_steps(path):
    return [json.loads(line) for line in path.read_text().splitlines() if '"kind":"step"' in line]


def test_a_cluster_started_by_a_scheduler_trains_without_the_launcher(tmp_path):
    """The scheduler path in the default suite: members started by hand form one cluster,
    train, and agree on the final bits, needing nothing only `exp launch` sets."""
    short = (*ARGS[:1], "train.steps=6", "checkpoint.every_steps=3", *ARGS[3:])
    results = _results(_cluster(tmp_path / "run", args=short))
    assert [code for code, _ in results] == [0, 0], results
    assert [summary["step"] for _, summary in results] == [6, 6]
    assert results[0][1]["full_hash"] == results[1][1]["full_hash"]
    assert (tmp_path / "run" / "ledger.process-1.jsonl").exists(), "both processes were members of one cluster"


@pytest.mark.slow  # ~50 s; `exp launch`'s tests cover a killed member and a preempted cluster by default
def test_sigterm_to_one_member_stops_all_at_one_step_and_the_relaunch_ends_bitwise_equal(tmp_path):
    # The uninterrupted cluster runs alongside: one start-up's worth of waiting for both.
    reference = _cluster(tmp_path / "straight")
    cut = tmp_path / "cut"
    members = _cluster(cut)
    deadline = time.monotonic() + 120
    while not (cut / "ledger.jsonl").exists() or len(_ledger_steps(cut / "ledger.jsonl")) < 30:
        assert time.monotonic() < deadline and members[0].poll() is None, "the cluster did not get going"
        time.sleep(0.05)
    members[1].send_signal(signal.SIGTERM)
    stopped = _results(members)
    assert [code for code, _ in stopped] == [75, 75], stopped
    assert stopped[0][1]["step"] == stopped[1][1]["step"] < 100
    assert stopped[1][1]["signal"] == "SIGTERM" and "another process" in stopped[0][1]["signal"]

    straight = _results(reference)
    assert [code for code, _ in straight] == [0, 0]
    assert straight[0][1]["full_hash"] == straight[1][1]["full_hash"]
    # Every process keeps its own ledger, and they agree: the fingerprints are of global arrays.
    own = [r["params"] for r in _ledger_steps(tmp_path / "straight" / "ledger.process-1.jsonl")]
    assert own == [r["params"] for r in _ledger_steps(tmp_path / "straight" / "ledger.jsonl")]

    resumed = _results(_cluster(cut))
    assert [code for code, _ in resumed] == [0, 0]
    assert resumed[0][1]["full_hash"] == straight[0][1]["full_hash"]
    assert not (cut / "events.process-1.jsonl").exists(), "process 0 alone writes the shared records"
