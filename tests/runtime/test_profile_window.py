"""`[logging] profile`: a real `jax.profiler` trace of exactly the window's steps.

The steps are real jitted updates dispatched ahead of the host, as the training
loop does (at most `INFLIGHT` unfinished), and the window is told of each
dispatch and each retirement. The trace is read back from the Perfetto file
jax writes: its step markers say which steps were inside.
"""

from __future__ import annotations

import gzip
import json
from collections import deque
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from expspec.compiler import plan_spec
from expspec.runtime.engine.profiler import STEP_MARKER, ProfileError, ProfileWindow
from expspec.runtime.runs.run_files import PROFILE
from tests.runtime.runs import DIGITS, exp, ledger

INFLIGHT = 2

_update = jax.jit(lambda x: jnp.tanh(x @ x.T / x.shape[0]))


def train(window: ProfileWindow, first: int, last: int) -> None:
    """Dispatch steps `first` .. `last`, retiring the oldest beyond `INFLIGHT` in flight; close."""
    x = jnp.ones((32, 32), jnp.float32)
    inflight: deque[tuple[int, jax.Array]] = deque()

    def retire() -> None:
        step, out = inflight.popleft()
        jax.device_get(out)
        window.after_retired(step)

    try:
        for step in range(first, last + 1):
            window.before_dispatch(step)
            x = _update(x)
            inflight.append((step, x))
            while len(inflight) > INFLIGHT:
                retire()
        while inflight:
            retire()
    finally:
        window.close()


def marked_steps(trace: Path) -> list[int]:
    """The step numbers of the step markers in a trace folder's Perfetto file."""
    with gzip.open(trace / "perfetto_trace.json.gz") as f:
        events = json.load(f)["traceEvents"]
    return sorted(int(e["args"]["step_num"]) for e in events if e.get("name") == STEP_MARKER)


def traces(folder: Path) -> list[Path]:
    root = folder / "plugins" / "profile"
    return sorted(root.iterdir()) if root.is_dir() else []


@pytest.fixture(autouse=True)
def _compiled():
    jax.block_until_ready(_update(jnp.ones((32, 32), jnp.float32)))  # compiling is outside every window


def test_the_trace_holds_exactly_the_window(tmp_path):
    window = ProfileWindow(tmp_path / PROFILE, start=3, steps=2)
    x = jnp.ones((32, 32), jnp.float32)
    for step in (1, 2):
        window.before_dispatch(step)
        x = _update(x)
        assert not window.tracing
    train(window, 3, 6)
    (trace,) = traces(tmp_path / PROFILE)
    assert window.written == trace
    assert list(trace.glob("*.xplane.pb")) and list(trace.glob("*.trace.json.gz"))
    assert marked_steps(trace) == [3, 4]


def test_the_trace_stops_once_the_last_step_is_retired_not_dispatched(tmp_path):
    window = ProfileWindow(tmp_path / PROFILE, start=2, steps=2)
    window.before_dispatch(2)
    window.before_dispatch(3)
    window.before_dispatch(4)  # dispatched ahead: the window's steps are not finished yet
    window.after_retired(2)
    assert window.tracing
    window.after_retired(3)
    assert not window.tracing and window.written is not None
    assert marked_steps(window.written) == [2, 3]


def test_an_attempt_resumed_inside_the_window_traces_from_its_first_step(tmp_path):
    window = ProfileWindow(tmp_path / PROFILE, start=3, steps=3)
    train(window, 5, 8)
    (trace,) = traces(tmp_path / PROFILE)
    assert marked_steps(trace) == [5]


@pytest.mark.parametrize("first,last", [(6, 9), (1, 2)], ids=["resumed-after-it", "ended-before-it"])
def test_a_window_outside_the_steps_run_writes_nothing(tmp_path, first, last):
    window = ProfileWindow(tmp_path / PROFILE, start=3, steps=2)
    train(window, first, last)
    assert not (tmp_path / PROFILE).exists()
    assert window.written is None


def test_an_attempt_stopped_inside_the_window_keeps_the_steps_it_ran(tmp_path):
    window = ProfileWindow(tmp_path / PROFILE, start=2, steps=10)
    train(window, 1, 4)  # --stop-at 4, a preemption: the loop ends and closes the window
    (trace,) = traces(tmp_path / PROFILE)
    assert marked_steps(trace) == [2, 3, 4]
    window.close()  # idempotent
    assert traces(tmp_path / PROFILE) == [trace]


def test_a_trace_already_running_is_a_typed_error(tmp_path):
    jax.profiler.start_trace(tmp_path / "other")
    try:
        window = ProfileWindow(tmp_path / PROFILE, start=1, steps=1)
        with pytest.raises(ProfileError, match=r"^logging\.profile: could not start the profiler trace"):
            window.before_dispatch(1)
        assert not window.tracing
        window.close()  # nothing of ours to stop
    finally:
        jax.profiler.stop_trace()


def test_from_plan_only_where_asked_and_on_process_0(tmp_path):
    asked = plan_spec(DIGITS, ["logging.profile={start=3,steps=2}"])
    window = ProfileWindow.from_plan(asked, tmp_path, primary=True)
    assert window is not None
    assert (window.folder, window.first, window.last) == (tmp_path / PROFILE, 3, 4)
    assert ProfileWindow.from_plan(asked, tmp_path, primary=False) is None
    assert ProfileWindow.from_plan(plan_spec(DIGITS, []), tmp_path, primary=True) is None


def test_exp_run_writes_the_trace_and_the_same_bits(tmp_path):
    tiny = ("train.steps=8", "model.hidden=[16]", "checkpoint.every_steps=4")
    profiled, plain = tmp_path / "profiled", tmp_path / "plain"
    done = exp("run", str(DIGITS), *tiny, "logging.profile={start=3,steps=2}", "--run-dir", str(profiled), "-q")
    assert done.returncode == 0, done.stderr
    (trace,) = traces(profiled / PROFILE)
    assert list(trace.glob("*.xplane.pb"))
    assert marked_steps(trace) == [3, 4]
    done = exp("run", str(DIGITS), *tiny, "--run-dir", str(plain), "-q")
    assert done.returncode == 0, done.stderr
    assert ledger(profiled) == ledger(plain)  # operational: tracing changes no bit
