"""The report as one self-contained HTML page.

Everything is inline: styles in a <style> element, figures as base64 `data:`
URIs. A Content-Security-Policy forbids every other source, so the page opens
from a mail attachment or a CI artifact and never reaches the network.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from expspec import __version__
from expspec.runtime.runs.report_data import RunRecords
from expspec.runtime.runs.run_files import Event

from .report_plots import AGREEMENT_COLORS, Plot

__all__ = ["render_page"]

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 3px 10px; text-align: left;
  vertical-align: top; border-bottom: 1px solid #eee; } th { background: #f6f6f6; }
td.k { color: #555; white-space: nowrap; } code, td.v { font-family: ui-monospace, monospace; font-size: 12.5px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; } .badge { padding: 1px 7px; border-radius: 9px; color: #fff; }
.passed, .finished, .agree { background: #2ca02c; } .failed, .error, .disagree { background: #d62728; }
.skipped, .stopped, .single, .other { background: #888; } .preempted { background: #ff7f0e; }
details summary { cursor: pointer; color: #1f77b4; } pre { background: #f8f8f8; padding: 0.8em; overflow: auto; }
"""
_EVENT_SKIP = {"event", "time", "step"}


def _when(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _badge(status: str) -> str:
    known = {"passed", "failed", "skipped", "error", "finished", "stopped", "preempted", "agree", "disagree", "single"}
    return f'<span class="badge {status if status in known else "other"}">{escape(status)}</span>'


def _table(rows: Iterable[Sequence[str]], header: Sequence[str] = (), raw_columns: Sequence[int] = ()) -> str:
    """Rows of cells, escaped except the columns named in `raw_columns` (already HTML)."""
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = []
    for row in rows:
        cells = [c if i in raw_columns else escape(c) for i, c in enumerate(row)]
        body.append("<tr>" + "".join(f'<td class="{"k" if i == 0 else "v"}">{c}</td>' for i, c in enumerate(cells)))
    return f"<table>{head}{''.join(body)}</table>"


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        out: list[tuple[str, Any]] = []
        for key in sorted(value):
            out += _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, value)]


def _summary(run: RunRecords) -> str:
    plan, last = run.plan, run.events[-1] if run.events else {}
    steps = (plan.get("spec") or {}).get("train", {}).get("steps")
    reached = max([e["step"] for e in run.events if isinstance(e.get("step"), int)] or [0])
    terminal = next((e for e in reversed(run.events) if e.get("full_hash")), {})
    counts = {s: sum(1 for v in run.agreement.values() if v == s) for s in AGREEMENT_COLORS}
    rows = [
        ("outcome", _badge(run.outcome)),
        ("step", escape(f"{reached} of {steps}" if steps is not None else str(reached))),
        ("attempts", escape(str(run.attempts))),
        ("started", escape(_when(run.events[0].get("time")) if run.events else "")),
        ("last event", escape(f"{last.get('event', '')} at {_when(last.get('time'))}" if last else "")),
        ("latest full hash", escape(str(terminal.get("full_hash", "")))),
        ("final eval", escape(_text(terminal.get("eval")) if terminal.get("eval") else "")),
        (
            "ledger steps",
            escape(
                f"{len(run.agreement)} recorded: {counts['agree']} by several attempts that agree, "
                f"{counts['disagree']} that disagree, {counts['single']} by one attempt"
            ),
        ),
    ]
    return _table(rows, raw_columns=(1,))


def _figures(plots: list[Plot], keys: Sequence[str], empty: str) -> str:
    out = []
    for plot in (p for p in plots if p.key in keys):
        data = base64.b64encode(plot.png).decode("ascii")
        out.append(
            f'<figure id="fig-{plot.key}"><img alt="{escape(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{escape(plot.title)}.</b> {escape(plot.caption)}</figcaption></figure>"
        )
    return "".join(out) or f"<p>{escape(empty)}</p>"


def _audits(run: RunRecords) -> str:
    disagree = [s for s, v in run.agreement.items() if v == "disagree"]
    lines = []
    if disagree:
        shown = ", ".join(map(str, disagree[:20])) + (" ..." if len(disagree) > 20 else "")
        lines.append(f"<p>{_badge('disagree')} attempts recorded different bits at steps {escape(shown)}.</p>")
    if not run.audits:
        lines.append("<p>No audits recorded for this run directory (<code>exp audit RUN_DIR</code> records them).</p>")
        return "".join(lines)
    rows = [
        (_when(a.get("time")), str(a.get("check", "")), _badge(str(a.get("status", ""))), str(a.get("summary", "")))
        for a in run.audits
    ]
    lines.append(_table(rows, ("time", "check", "status", "summary"), raw_columns=(2,)))
    return "".join(lines)


def _plan(run: RunRecords) -> str:
    plan = run.plan
    source = plan.get("source") or {}
    fingerprints = plan.get("fingerprints") or {}
    head = [
        ("spec file", str(source.get("file", ""))),
        ("overrides", " ".join(source.get("overrides") or []) or "none"),
        ("trajectory fingerprint", str(fingerprints.get("trajectory", ""))),
        ("spec fingerprint", str(fingerprints.get("spec", ""))),
    ]
    classes = plan.get("fields") or {}
    rows = []
    for key, value in _flatten(plan.get("spec") or {}):
        field_class = classes.get(key) or classes.get(key.rsplit(".", 1)[0], "")
        rows.append((key, _text(value), field_class))
    seeds = [(name, str(seed)) for name, seed in sorted((plan.get("seeds") or {}).items())]
    return (
        _table(head)
        + "<h3>Resolved spec</h3>"
        + _table(rows, ("field", "value", "class"))
        + "<h3>Seed tree</h3>"
        + _table(seeds, ("stream", "seed"))
        + f"<details><summary>plan.json</summary><pre>{escape(json.dumps(plan, indent=2, sort_keys=True))}</pre>"
        + "</details>"
    )


def _environment(run: RunRecords) -> str:
    if not run.env:
        return "<p>No env.json recorded.</p>"
    rows = [(key, _text(value)) for key, value in _flatten(run.env)]
    return _table(rows, ("key", "value"))


def _events(run: RunRecords) -> str:
    saves = [e for e in run.events if e.get("event") == Event.CHECKPOINT_SAVE]
    rows = []
    for event in run.events:
        if event.get("event") == Event.CHECKPOINT_SAVE:
            continue
        details = {k: v for k, v in event.items() if k not in _EVENT_SKIP and v is not None}
        text = ", ".join(f"{k}={_text(v)}" for k, v in sorted(details.items()))
        step = event.get("step")
        rows.append((_when(event.get("time")), str(event.get("event", "")), "" if step is None else str(step), text))
    note = ""
    if saves:
        blocked = max(float(e.get("blocked_s") or 0.0) for e in saves)
        note = f"<p>{len(saves)} checkpoint saves; the longest blocked training for {blocked:.3f} s.</p>"
    return note + _table(rows, ("time", "event", "step", "details"))


def render_page(run: RunRecords, plots: list[Plot]) -> str:
    """The whole page."""
    plan = run.plan
    name = str(plan.get("name") or (plan.get("spec") or {}).get("name") or run.run_dir.name)
    description = str((plan.get("spec") or {}).get("description") or "")
    curves = ("loss", "eval", "lr", "speed", "train_other")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(name)}: exp report</title><style>{_STYLE}</style></head>
<body>
<h1>{escape(name)}</h1>
<p class="sub">{escape(description)} Run directory <code>{escape(str(run.run_dir))}</code>.</p>
<section id="summary"><h2>Summary</h2>{_summary(run)}</section>
<section id="curves"><h2>Curves</h2>
<p>Vertical lines mark where an attempt stopped or was preempted, and where the next attempt resumed.</p>
{_figures(plots, curves, "No metrics recorded.")}</section>
<section id="audits"><h2>Agreement and audits</h2>
{_figures(plots, ("agreement",), "No ledger recorded.")}{_audits(run)}</section>
<section id="plan"><h2>Plan</h2>{_plan(run)}</section>
<section id="environment"><h2>Environment</h2>{_environment(run)}</section>
<section id="events"><h2>Events</h2>{_events(run)}</section>
<footer><p class="sub">Made by exp report (expspec {escape(__version__)}).</p></footer>
</body></html>
"""
