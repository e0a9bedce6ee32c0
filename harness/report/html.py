"""report.html: one self-contained page (inline SVG, inline CSS, no scripts).

Rendering is a separate step from checking (as in Porcupine): the checker
returns a result; this module turns result + history into HTML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

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
        return [{"checker": s.get("checker", "?"), "valid": _verdict_word(s.get("valid")),
                 "summary": s.get("summary", ""), "explanation": s.get("explanation", "")} for s in subs]
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


def render_report(spec: dict, history: Sequence[Op], results: dict) -> str:
    ps = stats.pairs(history)
    end_s = (history[-1].time / stats.NS) if history else 0.0
    faults = stats.fault_intervals(history, end_s)
    quantiles = stats.latency_quantiles(ps)
    series = stats.throughput(ps)
    result = results.get("result") or {}
    template = _ENV.get_template("report.html.j2")
    return template.render(
        spec=spec, results=results, verdict=_verdict_word(results.get("valid")),
        summary=results.get("summary", ""), explanation=result.get("explanation", ""),
        subs=_sub_results(result), evidence=_evidence(result), notes=results.get("notes") or [],
        availability=_availability(result), known_limitations=results.get("known_limitations") or [],
        counts=stats.counts(history), quantiles=quantiles, faults=faults, duration_s=end_s,
        timeline_svg=plots.timeline_svg(ps, faults, end_s) if ps else "",
        latency_svg=plots.latency_svg(ps, faults, quantiles, end_s) if ps else "",
        throughput_svg=plots.throughput_svg(series, faults, end_s) if ps else "",
    )


def write_report(path: str | Path, spec: dict, history: Sequence[Op], results: dict) -> Path:
    path = Path(path)
    path.write_text(render_report(spec, history, results), encoding="utf-8")
    return path
