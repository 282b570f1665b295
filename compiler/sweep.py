"""Sweeps: a grid of overrides, every point compiled into its own plan before anything runs.

`--sweep optimizer.learning_rate=1e-3,3e-3 --sweep model.hidden=[64],[128]` is
four points, the cartesian product in the order given; each point is nothing
but ordinary `KEY=VALUE` overrides, so a point is exactly the plan `exp run`
would make of them. Compiling every point first means a bad value anywhere is
refused before the first point trains, and lets the grid be checked as a whole:
a sweep whose points cannot differ in result (only operational fields swept,
two equal points, one checkpoint folder for all) is refused as pointless or unsafe.

Each point gets a directory name made from its swept values,
`learning_rate=0.003,hidden=128`: keys shortened to their last dotted part (or
as many parts as keep them apart), values written compactly (`0.003`, `true`,
lists joined with `+`: `hidden=64+64`), and only characters that need no quoting
in a shell or on any filesystem. Names are the same for the same command, so
running it again finds and resumes the same directories.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from expspec.spec import Problem, SpecError
from expspec.spec.overrides import parse_override, parse_overrides

from .compile import plan_spec
from .plan import Plan

__all__ = ["MAX_POINTS", "Sweep", "SweepAxis", "SweepPoint", "parse_axis", "plan_sweep", "split_values"]

MAX_POINTS = 1000
"""Largest grid accepted: beyond it a typo in a value list is likelier than intent."""

ENDS_A_RUN = frozenset({"train.steps"})
"""Operational fields that still change a run's result: `train.steps` leaves the
trajectory's math alone (a longer run continues the same one) but decides where it ends."""

_WHERE = "--sweep"
_COMMAND_LINE = "<command line>"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_MAX_NAME = 200


@dataclass(frozen=True)
class SweepAxis:
    """One `--sweep KEY=V1,V2,...`: a key and its values, as typed and as parsed."""

    key: str
    path: tuple[str, ...]
    texts: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SweepPoint:
    """One point of the grid: its own overrides (one per axis), its directory name, its plan."""

    overrides: tuple[str, ...]
    values: tuple[Any, ...]
    name: str
    plan: Plan


@dataclass(frozen=True)
class Sweep:
    axes: tuple[SweepAxis, ...]
    labels: tuple[str, ...]
    """The short name of each axis's key, as used in directory names."""
    points: tuple[SweepPoint, ...]

    @property
    def name(self) -> str:
        """The experiment's name (of the first point, should a sweep change it)."""
        return self.points[0].plan.name


def _fail(key: str, message: str) -> SpecError:
    return SpecError([Problem(_WHERE, None, key, message)])


def split_values(raw: str) -> list[str]:
    """`raw` split at commas outside brackets, braces and quotes: `[64,64],[128]` is two values."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(raw):
        char = raw[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 1  # an escaped character inside a basic string
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(raw[start:i].strip())
            start = i + 1
        i += 1
    parts.append(raw[start:].strip())
    return parts


def parse_axis(text: str) -> SweepAxis:
    """Parse one `KEY=V1,V2,...`; raise `SpecError` naming the key for a malformed one."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise _fail("", f"{text!r}: expected KEY=V1,V2,..., e.g. optimizer.learning_rate=1e-3,3e-3")
    texts = split_values(raw)
    if any(not value for value in texts):
        raise _fail(key, f"{raw!r}: a value is empty (values are separated by commas)")
    parsed = []
    for value in texts:
        try:
            parsed.append(parse_override(f"{key}={value}"))
        except SpecError as err:
            # The override parser says what is wrong; name the option, not "the command line".
            message = err.problems[0].message.split(": ", 1)[-1]
            raise _fail(key, message) from None
    return SweepAxis(key, parsed[0].path, tuple(texts), tuple(o.value for o in parsed))


def _overlaps(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _check_keys(axes: Sequence[SweepAxis], overrides: Sequence[str]) -> None:
    """A key is swept once and not also set: which value would win is not obvious."""
    try:
        fixed = parse_overrides(list(overrides))
    except SpecError:
        fixed = ()  # reported by the compiler, with everything else
    for i, axis in enumerate(axes):
        for other in axes[:i]:
            if _overlaps(axis.path, other.path):
                raise _fail(axis.key, f"is swept twice (also as --sweep {other.key}=...); give one --sweep per key")
        for override in fixed:
            if _overlaps(axis.path, override.path):
                raise _fail(axis.key, f"is swept and also set by {override.text!r}; give it once")


def _slug(value: Any) -> str:
    """A value as it appears in a directory name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "+".join(_slug(v) for v in value) or "empty"
    if isinstance(value, dict):
        return "+".join(f"{k}-{_slug(v)}" for k, v in value.items()) or "empty"
    return _UNSAFE.sub("_", str(value)) or "_"


def _labels(axes: Sequence[SweepAxis]) -> tuple[str, ...]:
    """Each key's shortest dotted tail that no other swept key shares."""
    lengths = [1] * len(axes)
    while True:
        labels = [".".join(axis.path[-n:]) for axis, n in zip(axes, lengths)]
        clash = [i for i, label in enumerate(labels) if labels.count(label) > 1 and lengths[i] < len(axes[i].path)]
        if not clash:
            return tuple(_UNSAFE.sub("_", label) for label in labels)
        for i in clash:
            lengths[i] += 1


def _names(labels: Sequence[str], grid: Sequence[tuple[Any, ...]], plans: Sequence[Plan]) -> list[str]:
    names = [",".join(f"{label}={_slug(v)}" for label, v in zip(labels, values)) for values in grid]
    names = [
        n if len(n) <= _MAX_NAME else f"{n[: _MAX_NAME - 13]}-{p.fingerprints.spec[:12]}" for n, p in zip(names, plans)
    ]
    # Values that write alike ("a b" and "a_b"), also on case-insensitive filesystems:
    # the spec fingerprint (which differs, duplicates being refused) tells them apart.
    folded = [n.casefold() for n in names]
    return [f"{n}-{p.fingerprints.spec[:8]}" if folded.count(n.casefold()) > 1 else n for n, p in zip(names, plans)]


def _result_changing(axis: SweepAxis, plans: Sequence[Plan]) -> bool:
    """Whether the key holds any trajectory field (or `train.steps`) in any point's plan."""
    for plan in plans:
        for field, cls in plan.fields.items():
            if _overlaps(tuple(field.split(".")), axis.path) and (cls == "trajectory" or field in ENDS_A_RUN):
                return True
    return False


def _blame(axes: Sequence[SweepAxis], problem: Problem) -> Problem:
    """A problem with a swept value names `--sweep` rather than "the command line"."""
    path = tuple(problem.path.split("."))
    if problem.file == _COMMAND_LINE and any(_overlaps(path, axis.path) for axis in axes):
        return replace(problem, file=_WHERE)
    return problem


def _check_grid(spec: str, axes: Sequence[SweepAxis], points: Sequence[SweepPoint]) -> list[Problem]:
    plans = [p.plan for p in points]
    if not any(_result_changing(axis, plans) for axis in axes):
        keys = ", ".join(axis.key for axis in axes)
        return [
            Problem(
                spec,
                None,
                "",
                f"sweeping only operational fields ({keys}) changes no result: every point would train "
                "the same trajectory; sweep a trajectory field (exp plan --explain shows each field's class)",
            )
        ]
    problems: list[Problem] = []
    seen: dict[tuple[str, int], SweepPoint] = {}
    pairs = []
    for point in points:
        same = (point.plan.fingerprints.trajectory, point.plan.spec.train.steps)
        if same in seen:
            pairs.append((seen[same], point, same))
        seen.setdefault(same, point)
    if pairs:
        first, second, same = pairs[0]
        more = f" (and {len(pairs) - 1} more such pairs)" if len(pairs) > 1 else ""
        problems.append(
            Problem(
                _WHERE,
                None,
                axes[0].key if len(axes) == 1 else "",
                f"{' '.join(first.overrides)} and {' '.join(second.overrides)} are the same experiment "
                f"(trajectory {same[0][:12]}, {same[1]} steps){more}; drop one",
            )
        )
    folders: dict[str, int] = {}
    for plan in plans:
        policy = plan.checkpoint
        if policy.enabled and policy.relative_to == "spec_dir":
            folders[policy.directory] = folders.get(policy.directory, 0) + 1
    for folder, count in folders.items():
        if count > 1:
            problems.append(
                Problem(
                    spec,
                    None,
                    "checkpoint.dir",
                    f"{count} points of the sweep would keep their checkpoints in the same folder {folder!r}; "
                    "unset it (each run directory then has its own checkpoints/) or sweep it too",
                )
            )
    return problems


def plan_sweep(spec: str | Path, overrides: Sequence[str], sweeps: Sequence[str]) -> Sweep:
    """Every point of the grid `sweeps` (each `KEY=V1,V2,...`) over `spec` with the fixed
    `overrides`, compiled; raise `SpecError` listing every problem of every point (once each)."""
    axes = tuple(parse_axis(text) for text in sweeps)
    if not axes:
        raise _fail("", "no --sweep given")
    _check_keys(axes, overrides)
    size = math.prod(len(axis.texts) for axis in axes)
    if size > MAX_POINTS:
        raise _fail("", f"the grid has {size} points; at most {MAX_POINTS} are run by one command")
    grid = list(itertools.product(*(range(len(axis.texts)) for axis in axes)))
    plans: list[Plan] = []
    own: list[tuple[str, ...]] = []
    problems: dict[str, Problem] = {}
    for indices in grid:
        mine = tuple(f"{axis.key}={axis.texts[i]}" for axis, i in zip(axes, indices))
        try:
            plans.append(plan_spec(spec, [*overrides, *mine]))
            own.append(mine)
        except SpecError as err:
            # Once each: a misspelt key is one problem however many values it was given.
            for problem in map(partial(_blame, axes), err.problems):
                problems.setdefault(f"{problem.file}:{problem.line}:{problem.path}: {problem.message}", problem)
    if problems:
        raise SpecError(list(problems.values()))
    labels = _labels(axes)
    values = [tuple(axis.values[i] for axis, i in zip(axes, indices)) for indices in grid]
    names = _names(labels, values, plans)
    points = tuple(SweepPoint(o, v, n, p) for o, v, n, p in zip(own, values, names, plans))
    problems_found = _check_grid(str(spec), axes, points)
    if problems_found:
        raise SpecError(problems_found)
    return Sweep(axes, labels, points)
