"""Choosing how many steps may be in flight when the spec says `max_inflight = "auto"`.

Only the runtime can answer: the answer depends on the compiled train step and
on the device it runs on, neither of which the plan knows. The step is lowered
and compiled with the state and batch the loop is about to use, so the program
analysed is the program run, and JAX's caches hand the loop this very
executable (no second compile; a test checks it).

The throttle changes when the host waits, never what the device computes, so
the choice cannot change a bit of the result: it is recorded (the `throttle`
event) for people, not for the fingerprints.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

import jax

from expspec.runtime.types import PyTree

__all__ = [
    "DEVICE_FRACTION",
    "FALLBACK_INFLIGHT",
    "HOST_FRACTION",
    "MAX_AUTO_INFLIGHT",
    "StepMemory",
    "ThrottleChoice",
    "choose_inflight",
    "default_budget",
    "inflight_for",
    "step_memory",
]

MAX_AUTO_INFLIGHT = 64
"""The most steps "auto" puts in flight, however much memory is free.

The queue only has to cover the host's hiccups (a metrics write, a batch
assembled late, a garbage collection): past a few dozen steps the device is
never idle and a deeper queue buys no throughput. What a deeper queue does
cost is latency: on SIGTERM the loop drains every step in flight before it
saves, and metrics reach the files that many steps late. 64 keeps that drain
under a second for steps of a few milliseconds and within seconds for tiny
ones, while a large model hits the memory bound long before this."""

FALLBACK_INFLIGHT = 2
"""Used when the backend gives no memory analysis: the spec's default."""

DEVICE_FRACTION = 0.9
"""Share of an accelerator's allocator limit (`bytes_limit`) "auto" may plan for;
the rest absorbs fragmentation and what the analysis does not see (eval batches,
checkpoint copies)."""

HOST_FRACTION = 0.5
"""Share of the host's available memory "auto" may plan for on CPU, where the
device's memory is the host's: the data, the Python process, background
checkpoint writes and other processes live there too."""

BudgetSource = Literal["spec", "device", "host"]


@dataclass(frozen=True)
class StepMemory:
    """What the compiled train step holds on its device, in bytes."""

    resident: int
    """Held once, however many steps are in flight: the arguments (the train
    state, updated in place through donation, and the next batch being placed)
    and the generated code."""
    per_step: int
    """Added by each step in flight: its own batch (kept alive until the step
    runs), its outputs that do not alias the donated state (metrics,
    fingerprints), and its temporaries. Counting temporaries per step is
    conservative: a device runs one step at a time, but an allocator may reserve
    a queued step's buffers when it is dispatched."""


@dataclass(frozen=True)
class ThrottleChoice:
    """The chosen bound and what it was chosen from."""

    max_inflight: int
    per_step_bytes: int | None
    resident_bytes: int | None
    budget_bytes: int
    budget_source: BudgetSource
    reason: str
    """One line for the progress display."""

    def record(self) -> dict[str, Any]:
        """The fields of the run's `throttle` event."""
        return asdict(self)


def _tree_bytes(tree: PyTree) -> int:
    return sum(int(leaf.nbytes) for leaf in jax.tree.leaves(tree))


def step_memory(stats: Any, batch: PyTree) -> StepMemory:
    """Split a compiled step's memory analysis into what is held once and per step."""
    batch_bytes = _tree_bytes(batch)
    resident = int(stats.argument_size_in_bytes) + int(stats.generated_code_size_in_bytes)
    outputs = max(0, int(stats.output_size_in_bytes) - int(stats.alias_size_in_bytes))
    per_step = batch_bytes + outputs + int(stats.temp_size_in_bytes)
    return StepMemory(resident=resident, per_step=max(1, per_step))


def inflight_for(budget: int, memory: StepMemory) -> int:
    """K = floor((budget - resident) / per_step), clamped to [1, MAX_AUTO_INFLIGHT].

    One step is always allowed: with less memory than that the run cannot go
    on at any setting, and JAX's own out-of-memory error says so more precisely.
    """
    k = (budget - memory.resident) // memory.per_step
    return max(1, min(MAX_AUTO_INFLIGHT, k))


def _host_available() -> int:
    """Bytes the host can give without swapping: MemAvailable, else free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            continue
    raise OSError("cannot tell how much memory this host has; set throttle.memory_budget")


def default_budget(device: jax.Device) -> tuple[int, BudgetSource]:
    """The budget when the spec sets none: a share of the accelerator's memory, or
    of the host's available memory on CPU (or when the device reports no limit)."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    limit = (stats or {}).get("bytes_limit")
    if limit:
        return int(limit * DEVICE_FRACTION), "device"
    return int(_host_available() * HOST_FRACTION), "host"


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def choose_inflight(train: Any, state: PyTree, batch: PyTree, budget: int | None, device: jax.Device) -> ThrottleChoice:
    """Choose K for `train` (the jitted step) called on `state` and `batch`.

    `budget` is the plan's resolved `memory_budget` in bytes; None takes
    `default_budget(device)`.
    """
    budget, source = (budget, "spec") if budget is not None else default_budget(device)
    where = {"spec": "throttle.memory_budget", "device": "device memory", "host": "host memory"}[source]
    try:
        stats = train.lower(state, batch).compile().memory_analysis()
    except (NotImplementedError, RuntimeError):
        stats = None
    if stats is None:
        reason = f"throttle: auto chose {FALLBACK_INFLIGHT} steps in flight (this backend gives no memory analysis)"
        return ThrottleChoice(FALLBACK_INFLIGHT, None, None, budget, source, reason)
    memory = step_memory(stats, batch)
    k = inflight_for(budget, memory)
    reason = (
        f"throttle: auto chose {k} step{'s' if k > 1 else ''} in flight "
        f"({_size(memory.per_step)} per step, {_size(memory.resident)} resident, "
        f"budget {_size(budget)} of {where})"
    )
    if budget < memory.resident + memory.per_step:
        reason += "; the budget is smaller than one step needs"
    return ThrottleChoice(k, memory.per_step, memory.resident, budget, source, reason)
