"""The report's figures, as PNG bytes drawn with matplotlib's Agg renderer.

Figures are built with `matplotlib.figure.Figure` and an Agg canvas, never
pyplot: no GUI backend is chosen, no global figure state is kept, and the
import stays inside `exp report` so `exp --help` never pays for matplotlib.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expspec.runtime.runs.report_data import Agreement, RunRecords

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["AGREEMENT_COLORS", "Plot", "draw_plots"]

AGREEMENT_COLORS: dict[Agreement, str] = {"agree": "#2ca02c", "disagree": "#d62728", "single": "#b8b8b8"}
# Interruptions as wide pale bands under a thin resume line: a run stopped at
# step k resumes at k, and both must stay visible.
_MARKER_STYLES: dict[str, dict[str, Any]] = {
    "resume": {"color": "#1f77b4", "linestyle": "--", "linewidth": 1.2, "zorder": 3},
    "preempted": {"color": "#d62728", "linestyle": "-", "linewidth": 5, "alpha": 0.35, "zorder": 1},
    "stopped": {"color": "#ff7f0e", "linestyle": "-", "linewidth": 5, "alpha": 0.35, "zorder": 1},
    "error": {"color": "#000000", "linestyle": "-.", "linewidth": 1.2, "zorder": 3},
}
_STATUS_WORDS: dict[Agreement, str] = {
    "agree": "attempts agree",
    "disagree": "attempts differ",
    "single": "one attempt",
}
_COLUMNS = 3
_NOT_METRICS = {"step", "split", "time", "lr", "steps_per_s"}


@dataclass(frozen=True)
class Plot:
    """One figure of the page."""

    key: str
    title: str
    caption: str
    png: bytes


def _figure(width: float = 6.4, height: float = 3.0, panels: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` axes, three to a row (`width` and `height` are per row)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns, rows = min(panels, _COLUMNS), math.ceil(panels / _COLUMNS)
    fig = Figure(figsize=(width, height * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for spare in axes[panels:]:
        spare.set_visible(False)
    return fig, axes[:panels]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No timestamp or version in the metadata: the same run gives the same bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _mark(ax: Axes, markers: Sequence[tuple[str, int]]) -> None:
    """Vertical lines where attempts ended and resumed, one legend entry per kind."""
    labelled: set[str] = set()
    for name, step in markers:
        style = _MARKER_STYLES.get(name, {"color": "grey", "linestyle": ":"})
        ax.axvline(step, label=None if name in labelled else name, **style)
        labelled.add(name)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    # A diverged step logs NaN or inf: left out, so the finite part keeps its scale.
    pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def _metric_names(records: list[dict[str, Any]]) -> list[str]:
    names = {k for r in records for k, v in r.items() if k not in _NOT_METRICS and isinstance(v, int | float)}
    return sorted(names, key=lambda n: (n != "loss", n))


def _span(run: RunRecords) -> tuple[float, float]:
    """One step range for every curve, so the figures line up under each other."""
    steps = [r["step"] for r in run.train + run.eval] + [s for _, s in run.markers] + list(run.agreement)
    last = max(steps, default=1) or 1
    return (0, last * 1.02)  # room for a point drawn at the last step


def _curves(
    run: RunRecords, records: list[dict[str, Any]], keys: Sequence[str], ylabel: str | None = None, style: str = "-"
) -> Figure | None:
    """One panel per key (keys with no values are left out), the markers on each."""
    present = [k for k in keys if _series(records, k)[0]]
    if not present:
        return None
    fig, axes = _figure(width=max(6.4, 3.6 * min(len(present), _COLUMNS)), panels=len(present))
    for ax, key in zip(axes, present):
        steps, values = _series(records, key)
        ax.plot(steps, values, style, color="#333333", linewidth=1.4, markersize=4, label=key)
        positive = [v for v in values if v > 0]
        if key == "steps_per_s" and positive and max(positive) / min(positive) > 50:
            ax.set_yscale("log")  # the first window includes compilation
        _mark(ax, run.markers)
        ax.set_xlim(*_span(run))
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel or key)
        ax.grid(alpha=0.3)
        if len(present) > 1:
            ax.set_title(key, fontsize=10)
        if run.markers:
            ax.legend(fontsize=8, loc="best")
    return fig


def _strip(run: RunRecords) -> Figure | None:
    """One cell per ledger step, coloured by whether the attempts that recorded it agree."""
    from matplotlib.patches import Patch

    steps = sorted(run.agreement)
    if not steps:
        return None
    gaps = [b - a for a, b in zip(steps, steps[1:]) if b > a]
    width = min(gaps) if gaps else 1
    fig, (ax,) = _figure(width=10.0, height=1.5)
    runs: list[tuple[Agreement, int, int]] = []  # (status, first step, last step)
    for step in steps:
        status = run.agreement[step]
        if runs and runs[-1][0] == status and step - runs[-1][2] == width:
            runs[-1] = (status, runs[-1][1], step)
        else:
            runs.append((status, step, step))
    for status, first, last in runs:
        ax.broken_barh([(first, last - first + width)], (0, 1), facecolors=AGREEMENT_COLORS[status])
    for step in run.checkpoints:
        ax.plot([step + width / 2], [1.15], marker="v", color="#555555", markersize=5, clip_on=False)
    _mark(ax, run.markers)
    counts = {status: sum(1 for v in run.agreement.values() if v == status) for status in AGREEMENT_COLORS}
    handles = [
        Patch(color=color, label=f"{_STATUS_WORDS[status]} ({counts[status]})")
        for status, color in AGREEMENT_COLORS.items()
    ]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlim(steps[0], steps[-1] + width)
    ax.set_ylim(0, 1.3)
    ax.set_yticks([])
    ax.set_xlabel("step  (triangles: checkpoints)")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return fig


def draw_plots(run: RunRecords) -> list[Plot]:
    """Every figure the run's records allow, in page order."""
    eval_names = _metric_names(run.eval)
    other_train = [n for n in _metric_names(run.train) if n != "loss"]
    wanted = [
        ("loss", "Training loss", "Loss of each logged training step.", _curves(run, run.train, ["loss"])),
        ("eval", "Eval metrics", "Metrics on the eval split.", _curves(run, run.eval, eval_names, style="o-")),
        ("lr", "Learning rate", "The schedule's value at each logged step.", _curves(run, run.train, ["lr"], "lr")),
        (
            "speed",
            "Steps per second",
            "Training throughput over each logging window (the first includes compilation).",
            _curves(run, run.train, ["steps_per_s"], "steps/s"),
        ),
        ("train_other", "Other training metrics", "Further per-step metrics.", _curves(run, run.train, other_train)),
        (
            "agreement",
            "Per-step agreement",
            "Green: every attempt that recorded the step has the same parameter and optimizer fingerprints; "
            "red: they differ; grey: one attempt recorded it.",
            _strip(run),
        ),
    ]
    return [Plot(key, title, caption, _png(fig)) for key, title, caption, fig in wanted if fig is not None]
