"""Supervising a group of processes that live and die together.

Members of one JAX cluster are useless alone: when one dies, the others are
SIGKILLed at once. A survivor inside a collective would wait for its dead peer
until JAX's heartbeat timeout (100 s) and then abort; a SIGTERM would make it
try to save a checkpoint with a peer that is gone. A SIGTERM or SIGINT to the
supervisor, at any moment, is a preemption of the whole group: forwarded once
to the members that exist, so that they stop together and save; no member is
started after it. Members start with SIGTERM and SIGINT blocked, which `exp`
unblocks once its handler is in place: a forwarded signal never finds a member
that cannot take it yet.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from expspec.exit_codes import ExitCode
from expspec.runtime.processes.signals import hand_back, recorded_signal

__all__ = [
    "GRACE_S",
    "Echo",
    "Failure",
    "Member",
    "Outcome",
    "signals_blocked",
    "signals_caught",
    "supervise",
]

POLL_S = 0.1
GRACE_S = 60.0
"""How long members may take to end after a SIGTERM or after a peer ended."""

Echo = Callable[[str, str], None]
"""Receives ("stdout" or "stderr", line) for every line a piped member prints."""


@dataclass(frozen=True)
class Member:
    """How to start one member: its command, environment, and the file its output
    goes to (None: pipe it through `echo`)."""

    argv: Sequence[str]
    env: Mapping[str, str]
    output: Path | None = None
    inherit_stderr: bool = False
    """With no `output`: write stderr straight to the supervisor's (a progress bar stays a
    bar on a terminal); only stdout goes through `echo`."""
    signals_blocked: bool = False
    """Start it with SIGTERM and SIGINT blocked, for an `exp` command (which unblocks
    them once its handler is in place): a signal forwarded while its interpreter
    starts then waits for the handler instead of killing it."""


@dataclass(frozen=True)
class Failure:
    """A member that ended badly on its own, or that the launcher had to kill."""

    process_id: int
    returncode: int | None
    """None: killed by the launcher because it did not end in time."""
    detail: str = ""

    @property
    def exit_code(self) -> int:
        return self.returncode if self.returncode is not None and self.returncode > 0 else ExitCode.RUN_FAILED

    def describe(self) -> str:
        who = f"process {self.process_id}"
        if self.returncode is None:
            return f"{who} {self.detail}"
        if self.returncode < 0:
            return f"{who} was killed by {_signal_name(-self.returncode)}"
        return f"{who} exited {self.returncode}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Outcome:
    """How the members ended."""

    returncodes: list[int]
    failures: list[Failure] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    """Members the launcher SIGKILLed because another failed, or because the group
    was preempted before all had started (not failures themselves)."""
    signal: str | None = None
    """The signal the launcher received (and forwarded as SIGTERM), if any."""
    interrupted: bool = False
    """A second SIGINT: every member was killed at once."""
    unstarted: list[int] = field(default_factory=list)
    """Members never started: the launcher was preempted first."""

    @property
    def exit_code(self) -> int:
        """The first failure's code, INTERRUPTED after a second SIGINT, PREEMPTED when preempted
        (members that saved and exited PREEMPTED, or a group stopped before it formed),
        else 0 (it had finished before the signal took effect)."""
        if self.failures:
            return self.failures[0].exit_code
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if any(code == ExitCode.PREEMPTED for code in self.returncodes) or self.unstarted:
            return ExitCode.PREEMPTED
        return ExitCode.OK


def supervise(
    members: Sequence[Member],
    *,
    grace_s: float = GRACE_S,
    echo: Echo | None = None,
    on_started: Callable[[list[int]], None] | None = None,
) -> Outcome:
    """Start `members`, wait for all of them, and stop the rest when one fails.

    On the launcher's SIGTERM or SIGINT (even one `exp` recorded before this call)
    every member gets one SIGTERM (they agree on a step, save, and exit PREEMPTED);
    members still alive `grace_s` later, or `grace_s` after a peer ended on its
    own, are killed. A second SIGINT kills at once. A signal before every member
    has started starts no more, and the started ones are killed: members wait for
    each other to join, so a group that never formed has trained nothing.
    """
    with signals_caught() as caught:
        running = _Running()
        try:
            for i, member in enumerate(members):
                if caught.signal is not None:
                    break
                running.start(i, member, echo)
            if len(running.procs) < len(members):
                running.close()
                codes = [p.returncode for p in running.procs if p.returncode is not None]
                started, unstarted = list(range(len(codes))), list(range(len(codes), len(members)))
                return Outcome(codes, [], started, caught.signal, caught.kill_now, unstarted)
            if on_started is not None:
                on_started([p.pid for p in running.procs])
            return running.watch(caught, grace_s)
        finally:
            running.close()


class _Caught:
    def __init__(self) -> None:
        self.signal: str | None = None
        self.kill_now = False

    @property
    def requested(self) -> str | None:
        """The signal received, under the name recording handlers share (runtime/processes/signals.py)."""
        return self.signal

    @requested.setter
    def requested(self, name: str | None) -> None:
        self.signal = name

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            self.kill_now = True
        self.signal = self.signal or signal.Signals(signum).name


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def signals_caught() -> Iterator[_Caught]:
    """SIGTERM and SIGINT as flags for the watch loop (only the main thread can catch them),
    including one that the handler it replaces had recorded (`exp`'s start-up handler)."""
    caught = _Caught()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {sig: signal.signal(sig, caught.handle) for sig in _SIGNALS}
    caught.signal = next(filter(None, map(recorded_signal, previous.values())), None)
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
            hand_back(handler, caught.signal)


@contextmanager
def signals_blocked() -> Iterator[None]:
    """SIGTERM and SIGINT held back in this thread: a process started within inherits
    them blocked (across exec), so that one sent while its interpreter starts waits
    until `exp` has installed its handler and unblocks them. Pending ones reach this
    process when the block ends."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class _Running:
    """The started members, their exits in the order they happened, and their last lines."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path | None] = []
        self.tails: list[deque[str]] = []
        self.killed: set[int] = set()
        self.exits: queue.Queue[int] = queue.Queue()
        self.readers: list[threading.Thread] = []

    def start(self, index: int, member: Member, echo: Echo | None) -> None:
        # Its own process group: a Ctrl-C at the terminal reaches the launcher only,
        # which forwards exactly one SIGTERM.
        common: dict[str, Any] = {"env": dict(member.env), "stdin": subprocess.DEVNULL, "process_group": 0}
        tail: deque[str] = deque(maxlen=20)
        blocked = signals_blocked() if member.signals_blocked else nullcontext()
        if member.output is None:
            stderr = None if member.inherit_stderr else subprocess.PIPE
            with blocked:
                proc = subprocess.Popen(member.argv, stdout=subprocess.PIPE, stderr=stderr, **common)
            for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                if pipe is None:
                    continue
                reader = threading.Thread(target=_relay, args=(pipe, stream, echo, tail), daemon=True)
                reader.start()
                self.readers.append(reader)
        else:
            with member.output.open("wb") as sink, blocked:
                proc = subprocess.Popen(member.argv, stdout=sink, stderr=subprocess.STDOUT, **common)
        self.procs.append(proc)
        self.outputs.append(member.output)
        self.tails.append(tail)
        threading.Thread(target=lambda: (proc.wait(), self.exits.put(index)), daemon=True).start()

    def live(self) -> list[int]:
        return [i for i, proc in enumerate(self.procs) if proc.returncode is None]

    def kill(self, indices: Sequence[int]) -> None:
        for i in indices:
            self.killed.add(i)
            _send(self.procs[i], signal.SIGKILL)

    def watch(self, caught: _Caught, grace_s: float) -> Outcome:
        failures: list[Failure] = []
        stopped: list[int] = []
        forwarded = interrupted = False
        deadline: float | None = None
        late = ""
        ended = 0
        while ended < len(self.procs):
            try:
                index = self.exits.get(timeout=POLL_S)
            except queue.Empty:
                index = None
            while index is not None:
                ended += 1
                code = self.procs[index].returncode
                assert code is not None
                if index not in self.killed and code not in (ExitCode.OK, ExitCode.PREEMPTED):
                    failures.append(Failure(index, code, self.last_line(index)))
                elif index not in self.killed and deadline is None:
                    deadline, late = time.monotonic() + grace_s, f"still ran {grace_s:g} s after process {index} ended"
                index = self.exits.get_nowait() if not self.exits.empty() else None
            live = [i for i in self.live() if i not in self.killed]
            if caught.kill_now and live:
                interrupted = True
                self.kill(live)
            elif failures and live:
                stopped += live
                self.kill(live)
            elif caught.signal and not forwarded:
                forwarded = True
                for i in live:
                    _send(self.procs[i], signal.SIGTERM)
                deadline, late = time.monotonic() + grace_s, f"had not stopped {grace_s:g} s after SIGTERM"
            elif deadline is not None and time.monotonic() > deadline and live:
                failures += [Failure(i, None, f"{late}; killed it") for i in live]
                self.kill(live)
        codes = [proc.returncode for proc in self.procs]
        return Outcome([c for c in codes if c is not None], failures, stopped, caught.signal, interrupted)

    def last_line(self, index: int) -> str:
        """The member's last non-empty line of output: its error message, usually."""
        output = self.outputs[index]
        if output is None:
            for reader in self.readers:
                reader.join(timeout=1.0)  # its last words may still be in the pipe
        lines = _tail(output) if output is not None else list(self.tails[index])
        text = next((line.strip() for line in reversed(lines) if line.strip()), "")
        return text[:300]

    def close(self) -> None:
        """Leave no member behind, whatever happened."""
        live = self.live()
        self.kill(live)
        for proc in self.procs:
            proc.wait()
        for reader in self.readers:
            reader.join(timeout=5.0)


def _relay(pipe: IO[bytes], stream: str, echo: Echo | None, tail: deque[str]) -> None:
    """Pass a member's lines on, and keep draining even when passing on fails
    (a closed terminal): a member blocked on a full pipe would stall the cluster."""
    with pipe:
        for raw in pipe:
            line = raw.decode("utf-8", errors="replace")
            if stream == "stderr":
                tail.append(line)
            if echo is not None:
                try:
                    echo(stream, line)
                except (OSError, ValueError):
                    echo = None


def _tail(path: Path, size: int = 16384) -> list[str]:
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - size))
            return file.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _send(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:  # ended just now
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
