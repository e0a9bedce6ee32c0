"""The report's plots, as inline SVG strings (matplotlib, no pyplot state).

Using ``matplotlib.figure.Figure`` directly keeps plotting free of global
state and of any GUI backend, so it works in threads, CI and subprocesses.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from harness.report.stats import FaultInterval, Pair

COLORS = {"ok": "#2e7d32", "fail": "#c62828", "info": "#ef6c00"}
COLORS_FAILING = "#6a1b9a"
FAULT_COLORS = {"partition": "#90caf9", "kill": "#ef9a9a", "pause": "#fff59d", "disk": "#bcaaa4"}
MAX_TIMELINE_OPS = 6000  # beyond this the timeline shows an even sample


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    # links within the page open in place, not in a new tab
    text = re.sub(r'(xlink:href="#[^"]*") target="_blank"', r"\1", text)
    # drop the XML prolog and doctype so the SVG can sit inline in HTML
    return re.sub(r"^.*?(<svg)", r"\1", text, count=1, flags=re.S)


def _bands(ax, faults: Sequence[FaultInterval]) -> None:
    seen = set()
    for f in faults:
        color = FAULT_COLORS.get(f.kind, "#d1c4e9")
        idle = "no effect" in f.label  # e.g. a partition of a one-node cluster: hatched, not filled
        name = f"{f.kind} (no effect)" if idle else f.kind
        label = name if name not in seen else None
        seen.add(name)
        if idle:
            ax.axvspan(f.start_s, f.end_s, fill=False, hatch="//", edgecolor=color, lw=0, label=label)
        else:
            ax.axvspan(f.start_s, f.end_s, color=color, alpha=0.35, lw=0, label=label)


def timeline_svg(
    ps: Sequence[Pair], faults: Sequence[FaultInterval], end_s: float, marks: Mapping[int, str] | None = None
) -> str:
    """One row per process; a bar from invocation to completion per op.

    ``marks`` maps the invocation index of a failing operation to a link
    (e.g. its bar in the counterexample's diagram): those are always drawn,
    outlined and labelled ``#index``, as SVG elements with the id
    ``timeline-op-<index>`` wrapped in that link."""
    marks = marks or {}
    procs = sorted({p.invoke.process for p in ps}, key=lambda x: (isinstance(x, str), x))
    row = {proc: i for i, proc in enumerate(procs)}
    height = min(8.0, 1.5 + 0.18 * max(1, len(procs)))
    fig = Figure(figsize=(11, height))
    ax = fig.add_subplot()
    _bands(ax, faults)
    step = max(1, len(ps) // MAX_TIMELINE_OPS)
    for t in ("ok", "fail", "info"):
        segs = [p for p in ps[::step] if p.type == t]
        if not segs:
            continue
        xs = [p.start_s for p in segs]
        widths = [max((p.end_s if p.end_s is not None else end_s) - p.start_s, end_s / 2000 or 1e-3) for p in segs]
        ys = [row[p.invoke.process] for p in segs]
        ax.barh(ys, widths, left=xs, height=0.7, color=COLORS[t], label=t, linewidth=0)
    marked = [p for p in ps if p.invoke.index in marks]
    for p in marked:
        width = max((p.end_s if p.end_s is not None else end_s) - p.start_s, end_s / 400 or 1e-3)
        (bar,) = ax.barh(
            [row[p.invoke.process]],
            [width],
            left=[p.start_s],
            height=0.9,
            color=COLORS_FAILING,
            edgecolor="#000000",
            linewidth=1.2,
            label="failing" if p is marked[0] else None,
        ).patches
        bar.set_gid(f"timeline-op-{p.invoke.index}")
        bar.set_url(marks[p.invoke.index])
        ax.annotate(
            f"#{p.invoke.index}",
            (p.start_s, row[p.invoke.process] + 0.45),
            fontsize=6,
            color="#000000",
            annotation_clip=True,
        )
    ax.set_xlim(0, max(end_s, 1e-3))
    ax.set_yticks(range(len(procs)))
    ax.set_yticklabels([str(p) for p in procs], fontsize=6)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("process")
    ax.set_title("Operations per process" + (f" (every {step}th op)" if step > 1 else ""))
    ax.legend(loc="upper right", fontsize=7, ncol=6)
    return _svg(fig)


def latency_svg(ps: Sequence[Pair], faults: Sequence[FaultInterval], quantiles: dict, end_s: float) -> str:
    fig = Figure(figsize=(11, 3.6))
    ax = fig.add_subplot()
    _bands(ax, faults)
    for t in ("ok", "fail", "info"):
        pts = [(p.start_s, p.latency_s * 1000) for p in ps if p.type == t and p.latency_s is not None]
        if pts:
            ax.scatter([x for x, _ in pts], [max(y, 1e-3) for _, y in pts], s=4, color=COLORS[t], label=t, alpha=0.7)
    ok = quantiles.get("ok", {})
    for name, style in (("p50", ":"), ("p95", "--"), ("p99", "-.")):
        if name in ok:
            ax.axhline(max(ok[name] * 1000, 1e-3), color="#424242", ls=style, lw=0.8, label=f"ok {name}")
    ax.set_yscale("log")
    ax.set_xlim(0, max(end_s, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency over time")
    ax.legend(loc="upper right", fontsize=7, ncol=7)
    return _svg(fig)


def throughput_svg(series: dict[str, list[tuple[float, float]]], faults: Sequence[FaultInterval], end_s: float) -> str:
    fig = Figure(figsize=(11, 3.0))
    ax = fig.add_subplot()
    _bands(ax, faults)
    for t in ("ok", "fail", "info"):
        pts = series.get(t)
        if pts:
            ax.step([x for x, _ in pts], [y for _, y in pts], where="post", color=COLORS[t], label=t)
    ax.set_xlim(0, max(end_s, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ops/s")
    ax.set_title("Throughput (completions per second)")
    ax.legend(loc="upper right", fontsize=7, ncol=6)
    return _svg(fig)
