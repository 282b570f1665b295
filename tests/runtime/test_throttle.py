"""`max_inflight = "auto"`: K chosen from the real compiled digits step, and recorded by a run."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

from expspec.compiler import plan_spec
from expspec.runtime.engine.build import build_components
from expspec.runtime.engine.throttle import (
    HOST_FRACTION,
    MAX_AUTO_INFLIGHT,
    StepMemory,
    choose_inflight,
    default_budget,
    inflight_for,
    step_memory,
)
from tests.runtime.runs import DIGITS

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
"""JAX's event for each executable it builds (or loads from the persistent cache): one per real compilation,
named by `fun_name`. A second jit wrapper around the same function counts again, unlike a jit cache size."""
TRAIN = "jit(train)"

# `exp` in this process, counting every compilation by name: jax is imported before
# the run applies its settings, which only need the backend not to have started.
COUNTED = f"""
import json, sys
import jax
seen = []
def listen(name, seconds, **kw):
    if name == {BACKEND_COMPILE!r}:
        seen.append(kw.get("fun_name"))
jax.monitoring.register_event_duration_secs_listener(listen)
from expspec.cli import main
sys.argv = ["exp", *sys.argv[1:]]
try:
    main()
except SystemExit as end:
    code = end.code
else:
    code = 0
print("COMPILED", json.dumps(seen), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def digits():
    """The digits components, a placed batch, and the train step's memory analysis."""
    plan = plan_spec(DIGITS, ["train.steps=5"])
    comps = build_components(plan, DIGITS.parent)
    batch = comps.place_batch(comps.data.train_batch(0))
    stats = comps.steps.train.lower(comps.state, batch).compile().memory_analysis()
    return comps, batch, stats


def _nbytes(tree) -> int:
    return sum(leaf.nbytes for leaf in jax.tree.leaves(tree))


def test_the_analysis_sees_the_state_once_and_the_batch_per_step(digits):
    comps, batch, stats = digits
    memory = step_memory(stats, batch)
    state = _nbytes(comps.state)
    # Arguments are the state (params and two Adam moments) and one batch.
    assert memory.resident >= state + _nbytes(batch)
    assert state > 3 * 256 * 256 * 4  # the hidden layer's weights, three times over
    # A step in flight holds far less than the state: the state is updated in place (donated).
    assert _nbytes(batch) < memory.per_step < state


def test_k_follows_the_budget(digits):
    _, batch, stats = digits
    memory = step_memory(stats, batch)
    assert inflight_for(1, memory) == 1
    assert inflight_for(memory.resident, memory) == 1
    assert inflight_for(memory.resident + int(3.5 * memory.per_step), memory) == 3
    assert inflight_for(memory.resident + 3 * memory.per_step, memory) == 3
    assert inflight_for(memory.resident + 3 * memory.per_step - 1, memory) == 2
    assert inflight_for(2**60, memory) == MAX_AUTO_INFLIGHT


def test_formula_on_round_numbers():
    memory = StepMemory(resident=1000, per_step=100)
    assert [inflight_for(b, memory) for b in (0, 1099, 1100, 1350, 7399, 7400, 10**9)] == [1, 1, 1, 3, 63, 64, 64]


def test_default_budget_on_cpu_is_a_share_of_available_host_memory(digits):
    comps, _, _ = digits
    device = comps.layout.mesh.local_devices[0]
    budget, source = default_budget(device)
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    available = int(meminfo["MemAvailable"].split()[0]) * 1024
    assert source == "host"
    # Memory moves while the test runs; a tenth either way is plenty of room.
    assert 0.9 * HOST_FRACTION * available < budget < 1.1 * HOST_FRACTION * available


def test_choosing_compiles_the_step_the_loop_then_runs(digits):
    comps, batch, stats = digits
    memory = step_memory(stats, batch)
    state = jax.tree.map(lambda a: a.copy(), comps.state)  # the call below donates its state
    budget = memory.resident + int(3.5 * memory.per_step)
    # The fixture compiled the step already: start cold, or a second compile could not show.
    jax.clear_caches()
    compiles: list[str] = []

    def listen(name: str, seconds: float, **kw: object) -> None:
        if name == BACKEND_COMPILE:
            compiles.append(str(kw.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        choice = choose_inflight(comps.steps.train, state, batch, budget, comps.layout.mesh.local_devices[0])
        chosen = compiles.count(TRAIN)
        jax.block_until_ready(comps.steps.train(state, batch))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert (choice.max_inflight, choice.budget_bytes, choice.budget_source) == (3, budget, "spec")
    assert (choice.per_step_bytes, choice.resident_bytes) == (memory.per_step, memory.resident)
    assert choice.reason.startswith("throttle: auto chose 3 steps in flight")
    assert chosen == 1, f"choosing compiled the train step {chosen} times"
    assert compiles.count(TRAIN) == 1, "the loop's first call compiled the train step again"


def test_a_run_with_auto_records_its_choice(tmp_path):
    args = (
        "run",
        str(DIGITS),
        "train.steps=5",
        "train.eval_every=0",
        'throttle={max_inflight="auto", memory_budget="1KiB"}',
        "--run-dir",
        str(tmp_path),
        "--json",
        "-q",
    )
    done = subprocess.run([sys.executable, "-P", "-c", COUNTED, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "finished" and result["step"] == 5
    (counted,) = [line for line in done.stderr.splitlines() if line.startswith("COMPILED ")]
    compiled = json.loads(counted.removeprefix("COMPILED "))
    # Choosing K compiled the train step; the loop ran that executable and compiled nothing more of it.
    assert compiled.count(TRAIN) == 1, f"the run compiled the train step {compiled.count(TRAIN)} times"
    assert result["compilations"] == 1
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.count("throttle") == 1 and names.index("start") < names.index("throttle")
    (throttle,) = [e for e in events if e["event"] == "throttle"]
    # 1 KiB is less than the digits state alone: one step at a time, and the note says why.
    assert throttle["max_inflight"] == 1
    assert (throttle["budget_bytes"], throttle["budget_source"], throttle["step"]) == (1024, "spec", 0)
    assert throttle["resident_bytes"] > 1024 and throttle["per_step_bytes"] > 0
    assert throttle["reason"].endswith("the budget is smaller than one step needs")
