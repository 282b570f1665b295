"""Rendering a plan for people: a summary, or every field with its class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from expspec.compiler import Plan

from .console import byte_size, stderr
from .render_mesh import mesh_line, render_mesh

_CLASS_STYLE = {"trajectory": "magenta", "operational": "cyan"}


def _value(plan_dump: dict[str, Any], path: str) -> str:
    value: Any = plan_dump
    for key in path.split("."):
        value = value[key]
    return json.dumps(value, ensure_ascii=False)


def _display_order(paths: list[str]) -> list[str]:
    """Declaration order, except that a table's `kind` comes first: it decides
    what the other keys of the table mean."""
    rank = {p: float(i) for i, p in enumerate(paths)}
    for path in paths:
        table, _, key = path.rpartition(".")
        if key == "kind":
            rank[path] = min(rank[p] for p in paths if p.startswith(table + ".")) - 0.5
    return sorted(paths, key=rank.__getitem__)


def _fields_table(plan: Plan) -> Table:
    dump = plan.to_dict()["spec"]
    table = Table(title="Resolved spec", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    table.add_column("class")
    for path in _display_order(list(plan.fields)):
        cls = plan.fields[path]
        table.add_row(path, _value(dump, path), Text(cls, style=_CLASS_STYLE[cls]))
    return table


def _seed_tree(plan: Plan) -> Tree:
    pinned = plan.spec.seeds
    tree = Tree(f"root seed {plan.spec.seed}")
    groups: dict[str, Tree] = {}
    for name, seed in plan.seeds.items():
        head, _, leaf = name.rpartition(".")
        parent = tree
        if head:
            parent = groups.get(head) or groups.setdefault(head, tree.add(head))
        label = f"{leaf or name} = {seed}" + ("  (pinned)" if name in pinned else "")
        parent.add(label)
    return tree


def _throttle(plan: Plan) -> str:
    throttle = plan.throttle
    if throttle.max_inflight != "auto":
        return f"at most {throttle.max_inflight} steps in flight"
    budget = throttle.memory_budget
    within = (
        "budget 90% of device memory (half the available memory on CPU)"
        if budget is None
        else f"budget {byte_size(budget)}"
    )
    return f"auto: steps in flight chosen from the compiled step's memory analysis, {within}"


def _summary(plan: Plan, devices: int | None) -> list[str]:
    ck, det = plan.checkpoint, plan.determinism
    if ck.enabled:
        keep = f"keep last {ck.keep_last}" + (f", every {ck.keep_every} permanently" if ck.keep_every else "")
        where = ck.directory if ck.relative_to == "spec_dir" else f"<run dir>/{ck.directory}"
        cadence = [f"every {ck.every_steps} steps"] if ck.every_steps else []
        cadence += [f"every {ck.every_seconds:g} s"] if ck.every_seconds else []
        checkpoint = (
            f"{' or '.join(cadence + ['at the end'])}, {keep}; {ck.save}, "
            f"{'async' if ck.async_save else 'sync'}; {where}"
            + ("; saves on SIGTERM/SIGINT" if ck.on_preemption else "")
        )
    else:
        checkpoint = "off (a killed run restarts from step 0)"
    overrides = ", ".join(plan.source.overrides) or "none"
    return [
        f"plan         {plan.name}  ({plan.source.file or 'in memory'}; overrides: {overrides})",
        f"trajectory   {plan.fingerprints.trajectory}",
        f"spec         {plan.fingerprints.spec}",
        f"steps        {plan.spec.train.steps}",
        f"checkpoint   {checkpoint}",
        f"throttle     {_throttle(plan)}",
        f"mesh         {mesh_line(plan, devices)}",
        f"contract     {det.contract}: {det.promise}",
    ]


def render_plan(plan: Plan, *, explain: bool, spec_dir: Path, devices: int | None = None) -> None:
    """Print the plan for people on stderr; `devices` resolves -1 mesh axes (it must fit
    the mesh: `resolve_mesh` raises `MeshError` otherwise)."""
    console = stderr()
    for line in _summary(plan, devices):
        console.print(line, markup=False)
    if not explain:
        console.print("(--explain for every field, seeds and sharding; --json for the whole plan)", style="dim")
        return
    det = plan.determinism
    console.print()
    console.print(_fields_table(plan))
    console.print()
    console.print("Seed tree (derived from the root seed and each stream's name)")
    console.print(_seed_tree(plan))
    console.print()
    console.print("Determinism settings applied before JAX starts", markup=False)
    for name, value in det.jax_config.items():
        console.print(f"  jax.config {name} = {json.dumps(value)}", markup=False)
    for flag in det.xla_flags:
        console.print(f"  XLA_FLAGS {flag}", markup=False)
    for name, value in det.env.items():
        console.print(f"  env {name}={value}", markup=False)
    console.print()
    render_mesh(console, plan, spec_dir, devices)
