"""Joining a JAX cluster, and what a process does differently inside one.

`exp run` joins JAX's own multi-controller runtime (`jax.distributed`) when the
environment asks for it: `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and
`JAX_PROCESS_ID` (as `exp launch` sets them), or a SLURM or Open MPI job of
more than one task, which `jax.distributed.initialize` detects itself. Every
process runs the same loop on its own devices of one global mesh; process 0
alone writes the run's shared files, every process writes its own ledger.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from expspec.errors import BadInput
from expspec.runtime.runs.run_files import process_file

__all__ = [
    "SINGLE",
    "Cluster",
    "ClusterError",
    "agree_any",
    "barrier",
    "gather_text",
    "join_cluster",
    "requested_cluster",
]

_EXPLICIT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class ClusterError(BadInput, ValueError):
    """The cluster variables are incomplete or malformed (bad input: exit 2)."""


@dataclass(frozen=True)
class Cluster:
    """This process's place in the cluster (index 0 of 1 outside one)."""

    index: int
    count: int
    joined: bool = False
    """Whether JAX's distributed runtime was started (even for a cluster of one)."""

    @property
    def primary(self) -> bool:
        """Whether this process writes the run's shared files (plan, env, events, metrics)."""
        return self.index == 0

    @property
    def multi(self) -> bool:
        return self.count > 1

    def own(self, filename: str) -> str:
        """This process's copy of a per-process file: `ledger.jsonl` -> `ledger.process-1.jsonl`."""
        return process_file(filename, self.index)


SINGLE = Cluster(0, 1)


def _int(env: Mapping[str, str], name: str) -> int:
    text = env.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ClusterError(f"{name}={text!r}: expected an integer") from None


def requested_cluster(env: Mapping[str, str] = os.environ) -> str | None:
    """How this process was asked to join a cluster: "explicit", "slurm", "ompi", or None."""
    if any(env.get(name) for name in _EXPLICIT):
        missing = [name for name in _EXPLICIT if not env.get(name)]
        if missing:
            raise ClusterError(f"a cluster needs {', '.join(_EXPLICIT)}; {', '.join(missing)} not set")
        count, index = _int(env, "JAX_NUM_PROCESSES"), _int(env, "JAX_PROCESS_ID")
        if count < 1 or not 0 <= index < count:
            raise ClusterError(f"JAX_PROCESS_ID={index} must be in 0..{count - 1} (JAX_NUM_PROCESSES={count})")
        return "explicit"
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return "slurm"
    if env.get("OMPI_MCA_orte_hnp_uri") and int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "ompi"
    return None


def join_cluster(env: Mapping[str, str] = os.environ) -> Cluster:
    """Join the cluster the environment names (before any JAX computation), or stay alone."""
    how = requested_cluster(env)
    if env.get("EXP_LAUNCHER_PID"):  # started by `exp launch` or `exp audit`: end with it
        _end_with_launcher(int(env["EXP_LAUNCHER_PID"]))
    if how is None:
        return SINGLE
    import jax

    # Cross-process collectives on CPU go through gloo; accelerators ignore the option.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption notifier would take SIGTERM from exp's own handler (runtime/processes/signals.py).
    jax.config.update("jax_enable_preemption_service", False)
    if how == "explicit":
        jax.distributed.initialize(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=_int(env, "JAX_NUM_PROCESSES"),
            process_id=_int(env, "JAX_PROCESS_ID"),
            # JAX's own default binds every interface; loopback unless told otherwise.
            coordinator_bind_address=env.get("JAX_COORDINATOR_BIND_ADDRESS")
            or _loopback_bind(env["JAX_COORDINATOR_ADDRESS"]),
        )
    else:
        jax.distributed.initialize()
    return Cluster(jax.process_index(), jax.process_count(), joined=True)


def _end_with_launcher(launcher: int) -> None:
    """Be SIGKILLed when the `exp launch` or `exp audit` that started this process dies (Linux)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the launcher's own kill on exit remains
        return
    if os.getppid() != launcher:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _loopback_bind(address: str) -> str | None:
    """Bind to loopback when the coordinator is on this machine's loopback; else JAX's default."""
    host, _, port = address.rpartition(":")
    return f"{host}:{port}" if host in ("127.0.0.1", "localhost", "[::1]") else None


def barrier(cluster: Cluster, name: str) -> None:
    """Wait until every process reaches `name` (nothing to wait for alone)."""
    if cluster.multi:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"expspec:{name}")


def agree_any(cluster: Cluster, flag: bool) -> bool:
    """Whether `flag` holds on any process; every process gets the same answer."""
    if not cluster.multi:
        return flag
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())


def gather_text(cluster: Cluster, text: str) -> list[str]:
    """Every process's `text`, by process index; every process gets the same list.

    A collective every process must join (two allgathers: the lengths, then the
    bytes padded to the longest), so that each can act on what the others saw.
    """
    if not cluster.multi:
        return [text]
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.frombuffer(text.encode(), dtype=np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.int32(data.size))).reshape(-1)
    padded = np.zeros(max(int(lengths.max()), 1), dtype=np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [bytes(row[:length]).decode() for row, length in zip(rows, lengths.tolist())]
