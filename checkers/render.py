"""Explain a check visually: one self-contained HTML page.

In the spirit of Porcupine's visualization: every operation is a bar on its
process's lane along a time axis (history positions, so formats without
clocks draw the same); the longest partial linearization (or, for a valid
check, the witness order) is highlighted and numbered; the operation that
cannot be placed is marked; hovering a bar shows the operation and the model
state before and after it in that order.

``render_html(result, history, model) -> str`` is pure: it returns the page
and writes nothing (the CLI writes the file). The page inlines its CSS, JS
and data — no network access when viewed. The template lives in
``checkers/templates/check.html`` and is read with importlib.resources.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2

from checkers.history import FAIL, FAIL_HAPPENED, Operation, pair
from checkers.result import Result, jsonable

_TEMPLATE = "check.html"


def _template() -> jinja2.Template:
    text = resources.files("checkers").joinpath("templates", _TEMPLATE).read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def _operations(history: Any) -> list[Operation]:
    if history is None:
        return []
    items = list(history)
    if items and isinstance(items[0], Operation):
        return items
    ops = pair(history)
    if getattr(history, "fail_means", None) != FAIL_HAPPENED:
        ops = [o for o in ops if o.status != FAIL]
    return ops


def _order_of(result: Result) -> list[dict[str, Any]]:
    """The steps to highlight: the longest partial linearization of an
    invalid result, or the witness order of a valid one (no states then)."""
    cx = result.counterexample or {}
    partials = cx.get("partial_linearizations") or []
    if partials:
        return list(partials[0])
    w = result.witness
    if isinstance(w, dict):
        if "order" in w:
            return [{"index": i} for i in w["order"]]
        if "partitions" in w:
            return [{"index": i} for p in w["partitions"] for i in p.get("order", [])]
    return []


def page_data(result: Result, history: Any, model: Any) -> dict[str, Any]:
    """Everything the page draws, as JSON-safe data (exposed for tests)."""
    ops = _operations(history)
    end = max([o.return_index or 0 for o in ops] + [o.call_index for o in ops] + [0]) + 1
    steps = _order_of(result)
    step_of = {s["index"]: (n, s) for n, s in enumerate(steps)}
    cx = result.counterexample or {}
    bad = (cx.get("op") or {}).get("index")
    candidates = {c["op"]["index"]: c for c in cx.get("candidates", [])
                  if isinstance(c, dict) and isinstance(c.get("op"), dict)}
    part = {o["index"] for o in cx.get("operations", []) if isinstance(o, dict)}
    processes: list[Any] = []
    bars = []
    for o in ops:
        if o.process not in processes:
            processes.append(o.process)
        n, step = step_of.get(o.index, (None, None))
        cand = candidates.get(o.index)
        desc = model.describe_op(o) if model is not None else f"{o.f} {o.input!r}"
        bars.append({
            "index": o.index, "lane": processes.index(o.process),
            "process": str(o.process), "start": o.call_index,
            "end": o.return_index if o.return_index is not None else end,
            "open": o.return_index is None, "status": o.status, "description": desc,
            "step": n, "before": step.get("state_before") if step else None,
            "after": step.get("state_after") if step else None,
            "failing": o.index == bad,
            "note": (cand.get("why") or ("legal here" if cand.get("legal_now") else
                                         "illegal here")) if cand else None,
            "in_partition": (o.index in part) if part else True,
        })
    verdict = {True: "valid", False: "invalid"}.get(result.valid, "unknown")  # type: ignore[arg-type]
    return jsonable({
        "verdict": verdict, "checker": result.checker, "summary": result.summary,
        "explanation": result.explanation, "processes": [str(p) for p in processes],
        "end": end, "bars": bars, "steps": len(steps), "failing": bad,
        "key": cx.get("key"), "state": cx.get("state"),
        "model": getattr(model, "name", None),
        "initial": model.describe_state(model.initial) if model is not None else None,
    })


def render_html(result: Result, history: Any, model: Any, title: str | None = None) -> str:
    """One self-contained HTML page explaining ``result`` on ``history``."""
    data = page_data(result, history, model)
    return _template().render(data=data, title=title or "squall check",
                              verdict=data["verdict"], summary=result.summary,
                              explanation=result.explanation)
