"""The audit's child processes, in one registry: a stopped audit stops them all.

`exp audit` and `exp lock` train in `exp run` subprocesses inside a temporary
folder. If the audit died of a SIGTERM or SIGINT, its children would train on
as orphans and write into a folder nobody removes (a preemption checkpoint
would even recreate it after a removal). So every child is started here:

- in its own process group: a Ctrl-C at the terminal reaches the audit alone,
  which forwards it once, instead of every process receiving its own;
- with `EXP_LAUNCHER_PID` set, so that `exp run` asks the kernel to SIGKILL it
  when the audit dies, even of a SIGKILL (`PR_SET_PDEATHSIG`, as for `exp launch`);
- registered, so that `stopped_on_signal` can forward a signal to every live
  child, wait a bounded grace, SIGKILL the rest and reap them, before the
  caller removes the folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType

__all__ = ["GRACE_S", "StoppedBySignal", "release", "spawn", "stopped_on_signal"]

GRACE_S = 10.0
"""How long a child may take to stop after the forwarded signal before it is killed."""

_LAUNCHER_ENV = "EXP_LAUNCHER_PID"
"""Read by `exp run` (runtime/processes/cluster.py): die with this process."""


class StoppedBySignal(BaseException):
    """The audit received SIGTERM or SIGINT; every child has been stopped and reaped.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` in a
    check swallows it on its way to the command line."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class _Registry:
    def __init__(self) -> None:
        self.live: set[subprocess.Popen[str]] = set()
        self.starting = 0
        """Children being started: a signal then waits until the new child is registered."""
        self.pending: int | None = None
        self.raised = False
        """StoppedBySignal was raised: further signals only hurry the stop."""
        self.hurry = False


_CHILDREN = _Registry()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _CHILDREN.raised:
        _CHILDREN.hurry = True
    elif _CHILDREN.starting:
        _CHILDREN.pending = signum
    else:
        _CHILDREN.raised = True
        raise StoppedBySignal(signum)


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start a child with piped text output and register it until `release`."""
    env = dict(env)
    if threading.current_thread() is threading.main_thread():
        # The kernel's parent-death signal follows the thread that forked: only the
        # main thread lives as long as the audit.
        env[_LAUNCHER_ENV] = str(os.getpid())
    _CHILDREN.starting += 1
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            process_group=0,
        )
        _CHILDREN.live.add(proc)
    finally:
        _CHILDREN.starting -= 1
    pending, _CHILDREN.pending = _CHILDREN.pending, None
    if pending is not None and not _CHILDREN.raised:
        _CHILDREN.raised = True
        raise StoppedBySignal(pending)
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    """Forget a child that has ended and been waited for."""
    _CHILDREN.live.discard(proc)


@contextmanager
def stopped_on_signal(grace_s: float = GRACE_S) -> Iterator[None]:
    """Within: SIGTERM or SIGINT raises `StoppedBySignal`, once every live child got
    that signal, ended (or was SIGKILLed `grace_s` later) and was reaped; a second
    signal kills them at once. On the way out, a child still running (one a
    failed check left behind) is killed: nothing outlives the block.
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    _CHILDREN.raised, _CHILDREN.hurry, _CHILDREN.pending = False, False, None
    try:
        yield
    except StoppedBySignal as stop:
        _stop_children(stop.signum, grace_s)
        raise
    finally:
        _stop_children(signal.SIGKILL, 0.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _stop_children(sig: int, grace_s: float) -> None:
    procs = [proc for proc in _CHILDREN.live if proc.poll() is None]
    for proc in procs:
        _send(proc, sig)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        # communicate, not wait: a child blocked on a full pipe could not end.
        while not _CHILDREN.hurry and time.monotonic() < deadline:
            try:
                proc.communicate(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                continue
    for proc in procs:
        if proc.poll() is None:
            _send(proc, signal.SIGKILL)
    for proc in list(_CHILDREN.live):
        proc.communicate()
        release(proc)


def _send(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:  # it ended just now
        pass
