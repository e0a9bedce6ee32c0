"""Checks for the recipe workloads (``workloads/queue.py``, ``counter.py``,
``election.py``): pure functions of a history.

- ``check_queue``: no acknowledged put lost (every ok put is consumed by an
  ok get or still present at the end, allowing one item per indeterminate
  get), no item consumed twice, nothing consumed that was never put, nothing
  both consumed and still present.
- ``check_counter``: the final value lies within [sum of acknowledged
  increments, that + sum of indeterminate ones]; reads within one session
  never go backwards.
- ``check_elected``: a leader was elected at all, and again in the healed
  final phase (every earlier leader's session had ended by then).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from checkers.history import FAIL, INFO, OK, Op, pair
from checkers.result import Result

MAX_SHOWN = 20


# -------------------------------------------------------------------- queue
def check_queue(history: Iterable[Op]) -> Result:
    """ok puts ``[queue, item]``, ok gets ``[queue, item|None]``, one ok
    ``final-read`` ``{queue: [items...]}``."""
    name = "queue"
    ops = pair(list(history))
    finals = [o for o in ops if o.f == "final-read" and o.status == OK and isinstance(o.output, dict)]
    if not finals or any(o.f in ("put", "get") and o.call_index > finals[-1].call_index for o in ops):
        return Result.unknown(
            name,
            "no final read after the last put/get",
            "Without the queues' final contents nothing can be said about lost items.",
        )
    final = finals[-1].output
    problems: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    queues = sorted({o.input[0] for o in ops if o.f in ("put", "get")} | set(final), key=str)
    for q in queues:
        puts = [o for o in ops if o.f == "put" and o.input[0] == q]
        gets = [o for o in ops if o.f == "get" and o.input[0] == q]
        acked = {o.input[1] for o in puts if o.status == OK}
        attempted = {o.input[1] for o in puts if o.status != FAIL}
        got = Counter(o.output[1] for o in gets if o.status == OK and o.output[1] is not None)
        present = Counter(final.get(q, []))
        info_gets = sum(1 for o in gets if o.status == INFO)
        missing = sorted(acked - set(got) - set(present))
        if len(missing) > info_gets:
            problems.append(
                {
                    "queue": q,
                    "kind": "lost",
                    "items": missing[:MAX_SHOWN],
                    "why": f"{q}: {len(missing)} acknowledged item(s) neither consumed nor "
                    f"present, but only {info_gets} get(s) were indeterminate",
                }
            )
        twice = [i for i, c in got.items() if c > 1]
        if twice:
            takers = {i: [o for o in gets if o.status == OK and o.output[1] == i] for i in twice[:MAX_SHOWN]}
            problems.append(
                {
                    "queue": q,
                    "kind": "consumed-twice",
                    "items": twice[:MAX_SHOWN],
                    "gets": {str(i): [_get_op(o) for o in takers[i]] for i in takers},
                    "why": "; ".join(
                        f"{q}: item {i} was consumed by {len(takers[i])} gets: "
                        + ", ".join(
                            f"op {o.index} (process {o.process}"
                            + (f" on {o.completion.node}" if o.completion and o.completion.node else "")
                            + ")"
                            for o in takers[i]
                        )
                        for i in list(takers)[:3]
                    )
                    + ("" if len(twice) <= 3 else f"; {len(twice) - 3} more item(s) consumed twice"),
                }
            )
        for kind, items in (
            ("present-twice", [i for i, c in present.items() if c > 1]),
            ("consumed-and-present", sorted(set(got) & set(present))),
            ("never-put", sorted((set(got) | set(present)) - attempted, key=str)),
        ):
            if items:
                problems.append(
                    {"queue": q, "kind": kind, "items": items[:MAX_SHOWN], "why": f"{q}: {kind}: {items[:MAX_SHOWN]}"}
                )
        details[q] = {
            "acknowledged_puts": len(acked),
            "consumed": sum(got.values()),
            "present": sum(present.values()),
            "indeterminate_gets": info_gets,
            "unaccounted": len(missing),
        }
    if problems:
        return Result.illegal(
            name,
            f"{len(problems)} queue violation(s): " + ", ".join(sorted({p["kind"] for p in problems})),
            "\n".join(p["why"] for p in problems),
            {"problems": problems},
            details,
        )
    total = sum(d["acknowledged_puts"] for d in details.values())
    if not total:
        return Result.unknown(name, "no put was acknowledged, so nothing was checked", details=details)
    return Result.ok(
        name,
        f"{total} acknowledged puts all accounted for, none consumed twice",
        {q: {"consumed": d["consumed"], "present": d["present"]} for q, d in details.items()},
        details=details,
    )


def _get_op(o: Any) -> dict[str, Any]:
    return {"op": o.index, "process": o.process, "node": o.completion.node if o.completion is not None else None}


# ------------------------------------------------------------------ counter
def check_counter(history: Iterable[Op]) -> Result:
    """ok/info ``add`` with an int ``value``; ``read``/``final-read`` ok
    ``[value, session]``."""
    name = "counter"
    ops = pair(list(history))
    adds = [o for o in ops if o.f == "add"]
    low = sum(o.input for o in adds if o.status == OK)
    high = low + sum(o.input for o in adds if o.status == INFO)
    finals = [o for o in ops if o.f == "final-read" and o.status == OK]
    problems: list[dict[str, Any]] = []
    last: dict[Any, Any] = {}
    compared = 0
    for o in sorted((o for o in ops if o.f in ("read", "final-read") and o.status == OK), key=lambda o: o.call_index):
        value, session = o.output
        if not 0 <= value <= high:
            problems.append(
                {
                    "kind": "out-of-bounds",
                    "read": o.to_dict(),
                    "why": f"read {value} at index {o.index} outside [0, {high}]",
                }
            )
        prev = last.get(session)
        if prev is not None:
            compared += 1
            if value < prev.output[0]:
                problems.append(
                    {
                        "kind": "backwards",
                        "earlier": prev.to_dict(),
                        "later": o.to_dict(),
                        "why": f"session {session:#x} read {prev.output[0]} then {value}",
                    }
                )
        last[session] = o
    if finals and any(o.call_index > finals[-1].call_index for o in adds):
        finals = []
    if finals:
        value = finals[-1].output[0]
        if not low <= value <= high:
            problems.append(
                {
                    "kind": "final-out-of-bounds",
                    "final": finals[-1].to_dict(),
                    "why": f"final value {value} outside [{low}, {high}] (acknowledged "
                    f"increments {low}, with indeterminate ones {high})",
                }
            )
    details = {
        "acknowledged": low,
        "upper_bound": high,
        "compared_reads": compared,
        "failed_adds": sum(1 for o in adds if o.status == FAIL),
    }
    if problems:
        return Result.illegal(
            name,
            f"{len(problems)} counter violation(s): " + ", ".join(sorted({p["kind"] for p in problems})),
            "\n".join(p["why"] for p in problems[:MAX_SHOWN]),
            {"problems": problems[:MAX_SHOWN]},
            details,
        )
    if not finals:
        return Result.unknown(name, "no final read after the last add", details=details)
    if not low:
        return Result.unknown(name, "no increment was acknowledged, so nothing was checked", details=details)
    return Result.ok(
        name,
        f"final value {finals[-1].output[0]} within [{low}, {high}]; {compared} successive reads never went back",
        {"final": finals[-1].output[0], "bounds": [low, high]},
        details=details,
    )


# ----------------------------------------------------------------- election
def check_elected(history: Iterable[Op], f: str = "lead", final_f: str = "final-lead") -> Result:
    """Progress: some ``f`` op was elected (ok) during the run, and the final
    phase's ``final_f`` op -- run after healing, when every earlier leader's
    session has ended -- was elected too."""
    name = "election-liveness"
    ops = pair(list(history))
    led = [o for o in ops if o.f == f and o.status == OK]
    finals = [o for o in ops if o.f == final_f]
    ok_finals = [o for o in finals if o.status == OK]
    details = {"elected": len(led), "final_attempts": len(finals), "final_elected": len(ok_finals)}
    if not finals:
        return Result.unknown(name, "the final election was not run", details=details)
    if not ok_finals:
        return Result.illegal(
            name,
            "no leader was elected in the healed final phase",
            f"{len(finals)} final election attempt(s) after healing, none elected within its bound",
            {"final_attempts": [o.to_dict() for o in finals[:10]]},
            details,
        )
    return Result.ok(
        name,
        f"{len(led)} elections during the run; a new leader elected after healing",
        {"final_leader": ok_finals[0].to_dict()},
        details=details,
    )
