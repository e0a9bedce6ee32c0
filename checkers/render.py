"""Explain a check visually: one self-contained HTML page.

In the spirit of Porcupine's visualization: every operation is a bar on its
process's lane along a time axis (history positions, so formats without
clocks draw the same); the longest partial linearization (or, for a valid
check, the witness order) is highlighted and numbered; the operation that
cannot be placed is marked; hovering a bar shows the operation and the model
state before and after it in that order.

``render_html(result, history, model) -> str`` is pure: it returns the page
and writes nothing (the CLI writes the file). The page inlines its CSS, JS
and data — no network access when viewed. The templates live in
``checkers/templates/`` (``check.html``, the page; ``check_diagram.html``,
the diagram alone) and are read with importlib.resources.

The run report draws the same diagram from a stored result (results.json):
``stored_diagrams(result_dict)`` finds the counterexamples that carry their
operations (linearizability and sequential consistency do) and
``render_diagram(data, prefix, link)`` returns the diagram as an HTML
fragment.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2

from checkers.history import FAIL, FAIL_HAPPENED, Operation, pair
from checkers.result import Result, jsonable

_TEMPLATE = "check.html"


def _load(name: str) -> str:
    return resources.files("checkers").joinpath("templates", name).read_text("utf-8")


_ENV = jinja2.Environment(loader=jinja2.FunctionLoader(_load), autoescape=True, undefined=jinja2.StrictUndefined)


def _template(name: str = _TEMPLATE) -> jinja2.Template:
    return _ENV.get_template(name)


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
    candidates = {
        c["op"]["index"]: c for c in cx.get("candidates", []) if isinstance(c, dict) and isinstance(c.get("op"), dict)
    }
    part = {o["index"] for o in cx.get("operations", []) if isinstance(o, dict)}
    processes: list[Any] = []
    bars = []
    for o in ops:
        if o.process not in processes:
            processes.append(o.process)
        n, step = step_of.get(o.index, (None, None))
        cand = candidates.get(o.index)
        desc = model.describe_op(o) if model is not None else f"{o.f} {o.input!r}"
        bars.append(
            {
                "index": o.index,
                "lane": processes.index(o.process),
                "process": str(o.process),
                "start": o.call_index,
                "end": o.return_index if o.return_index is not None else end,
                "open": o.return_index is None,
                "status": o.status,
                "description": desc,
                "step": n,
                "before": step.get("state_before") if step else None,
                "after": step.get("state_after") if step else None,
                "failing": o.index == bad,
                "note": (cand.get("why") or ("legal here" if cand.get("legal_now") else "illegal here"))
                if cand
                else None,
                "in_partition": (o.index in part) if part else True,
            }
        )
    verdict = {True: "valid", False: "invalid"}.get(result.valid, "unknown")  # type: ignore[arg-type]
    return jsonable(
        {
            "verdict": verdict,
            "checker": result.checker,
            "summary": result.summary,
            "explanation": result.explanation,
            "processes": [str(p) for p in processes],
            "end": end,
            "bars": bars,
            "steps": len(steps),
            "failing": bad,
            "key": cx.get("key"),
            "state": cx.get("state"),
            "model": getattr(model, "name", None),
            "initial": model.describe_state(model.initial) if model is not None else None,
        }
    )


def render_html(result: Result, history: Any, model: Any, title: str | None = None) -> str:
    """One self-contained HTML page explaining ``result`` on ``history``."""
    data = page_data(result, history, model)
    return _template().render(
        data=data,
        title=title or "squall check",
        verdict=data["verdict"],
        summary=result.summary,
        explanation=result.explanation,
    )


class _StoredModel:
    """Stands in for the model when drawing a stored counterexample: its
    operations already carry the model's descriptions."""

    initial = None

    def __init__(self, name: Any, descriptions: dict[int, str]) -> None:
        self.name = name
        self._descriptions = descriptions

    def describe_op(self, op: Operation) -> str:
        return self._descriptions.get(op.index, f"{op.f} {op.input!r}")

    def describe_state(self, state: Any) -> Any:
        return None


def _stored_operation(d: dict[str, Any]) -> Operation:
    return Operation(
        id=int(d["id"]),
        process=d["process"],
        f=str(d["f"]),
        input=d.get("input"),
        output=d.get("output"),
        status=str(d["status"]),
        call_index=int(d["call_index"]),
        return_index=d.get("return_index"),
        call_time=int(d.get("call_time") or 0),
        return_time=d.get("return_time"),
        key=d.get("key"),
    )


def stored_diagrams(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The diagrams of a stored (``Result.to_dict``) result: one per checker
    whose counterexample lists its operations; each is ``{"checker", "data"}``
    with ``data`` as :func:`page_data` returns it."""
    subs = (result.get("details") or {}).get("results")
    out = []
    for r in subs if isinstance(subs, list) and subs else [result]:
        if not isinstance(r, dict) or r.get("valid") is not False:
            continue
        cx = r.get("counterexample")
        ops = cx.get("operations") if isinstance(cx, dict) else None
        if not isinstance(cx, dict) or not isinstance(ops, list) or not isinstance(cx.get("op"), dict):
            continue
        try:
            operations = [_stored_operation(o) for o in ops]
        except (KeyError, TypeError, ValueError):
            continue  # not a diagram's counterexample
        model = _StoredModel(
            cx.get("model"),
            {int(o["index"]): str(o.get("description", "")) for o in ops if isinstance(o.get("index"), int)},
        )
        checked = Result(
            False, str(r.get("checker", "?")), str(r.get("summary", "")), str(r.get("explanation", "")), None, cx
        )
        out.append({"checker": checked.checker, "data": page_data(checked, operations, model)})
    return out


def render_diagram(data: dict[str, Any], prefix: str, link: str | None = None) -> str:
    """The diagram alone (an HTML fragment with its own CSS and script);
    element ids start with ``prefix``; ``link`` is where the failing
    operation's bar leads (e.g. its mark on a run's timeline)."""
    return _template("check_diagram.html").render(data=data, prefix=prefix, link=link)
