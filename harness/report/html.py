"""report.html: one self-contained page (inline SVG and CSS; no network).

Rendering is a separate step from checking (as in Porcupine): the checker
returns a result; this module turns result + history into HTML.

An invalid run's report shows its anomaly: a table of the failing
operations, the counterexample drawn inline as ``squall check --html`` draws
it (``checkers.render``: linearizability and sequential consistency carry
their operations), and those operations outlined on the run's timeline,
each linked to the other (timeline ``#timeline-op-<index>``, diagram
``#cx-<checker>-failing-op``, table ``#failing-op-<index>``). Only the
diagram needs a script; everything else reads without one. Faults are
labelled in words (``stats.describe_fault``); counts are
``stats.counts`` (an operation is an invocation; history lines are lines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from checkers.history import Op
from harness.report import plots, stats

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)
MAX_EVIDENCE_CHARS = 20_000


def _verdict_word(valid: Any) -> str:
    if valid is True:
        return "valid"
    if valid is False:
        return "invalid"
    if valid == "unknown":
        return "unknown"
    return "no verdict"


def _sub_results(result: dict) -> list[dict]:
    subs = (result.get("details") or {}).get("results")
    if isinstance(subs, list) and subs:
        return [
            {
                "checker": s.get("checker", "?"),
                "valid": _verdict_word(s.get("valid")),
                "summary": s.get("summary", ""),
                "explanation": s.get("explanation", ""),
            }
            for s in subs
        ]
    return []


def _availability(result: dict) -> list[dict]:
    """The availability checker's per-window table (checkers.availability)."""
    for s in (result.get("details") or {}).get("results") or [result]:
        if s.get("checker") == "availability":
            return list((s.get("details") or {}).get("windows") or [])
    return []


def _evidence(result: dict) -> str:
    ce = result.get("counterexample")
    if not ce:
        return ""
    text = json.dumps(ce, indent=2, sort_keys=True, default=str)
    if len(text) > MAX_EVIDENCE_CHARS:
        text = text[:MAX_EVIDENCE_CHARS] + f"\n… ({len(text) - MAX_EVIDENCE_CHARS} more characters in results.json)"
    return text


def _dom_id(checker: str) -> str:
    return "cx-" + (re.sub(r"[^a-z0-9]+", "-", checker.lower()).strip("-") or "checker") + "-"


def anomaly(result: dict, history: Sequence[Op]) -> tuple[list[dict], list[dict]]:
    """(diagrams, failing operations) of a stored result: each diagram is
    ``{"checker", "prefix", "html", "failing"}``; each failing operation
    ``{"index", "process", "f", "value", "checker", "diagram"}`` where
    ``diagram`` is the anchor of its bar in a diagram, or None."""
    from checkers.render import render_diagram, stored_diagrams

    if result.get("valid") is not False:
        return [], []
    by_index = {op.index: op for op in history}
    diagrams: list[dict[str, Any]] = []
    failing: dict[int, dict[str, Any]] = {}  # op index -> where it is shown
    for d in stored_diagrams(result):
        prefix = _dom_id(d["checker"])
        bad = d["data"].get("failing")
        link = f"#timeline-op-{bad}" if bad in by_index else None
        diagrams.append(
            {"checker": d["checker"], "prefix": prefix, "failing": bad, "html": render_diagram(d["data"], prefix, link)}
        )
        if bad in by_index:
            failing.setdefault(bad, {"checker": d["checker"], "diagram": f"#{prefix}failing-op"})
    subs = (result.get("details") or {}).get("results") or [result]
    for sub in subs:
        if isinstance(sub, dict) and sub.get("valid") is False:
            for i in stats.failing_indices(sub.get("counterexample"), history):
                failing.setdefault(i, {"checker": str(sub.get("checker", "?")), "diagram": None})
    rows = []
    for i in sorted(failing):
        op = by_index[i]
        rows.append(
            {"index": i, "process": op.process, "f": op.f, "value": json.dumps(op.value, default=str), **failing[i]}
        )
    return diagrams, rows


def render_report(spec: dict, history: Sequence[Op], results: dict) -> str:
    ps = stats.pairs(history)
    end_s = (history[-1].time / stats.NS) if history else 0.0
    faults = stats.fault_intervals(history, end_s)
    quantiles = stats.latency_quantiles(ps)
    series = stats.throughput(ps)
    result = results.get("result") or {}
    diagrams, failing = anomaly(result, history)
    marks = {f["index"]: f["diagram"] or f"#failing-op-{f['index']}" for f in failing}
    template = _ENV.get_template("report.html.j2")
    return template.render(
        spec=spec,
        results=results,
        verdict=_verdict_word(results.get("valid")),
        summary=results.get("summary", ""),
        explanation=result.get("explanation", ""),
        subs=_sub_results(result),
        evidence=_evidence(result),
        notes=results.get("notes") or [],
        diagrams=diagrams,
        failing=failing,
        availability=_availability(result),
        known_limitations=results.get("known_limitations") or [],
        counts=stats.counts(history),
        quantiles=quantiles,
        faults=faults,
        duration_s=end_s,
        timeline_svg=plots.timeline_svg(ps, faults, end_s, marks) if ps else "",
        latency_svg=plots.latency_svg(ps, faults, quantiles, end_s) if ps else "",
        throughput_svg=plots.throughput_svg(series, faults, end_s) if ps else "",
    )


def write_report(path: str | Path, spec: dict, history: Sequence[Op], results: dict) -> Path:
    path = Path(path)
    path.write_text(render_report(spec, history, results), encoding="utf-8")
    return path
