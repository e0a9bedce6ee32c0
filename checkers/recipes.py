"""Checks for the recipe workloads (``workloads/queue.py``, ``counter.py``,
``election.py``): pure functions of a history.

- ``check_queue``: no acknowledged put lost (every ok put is consumed by an
  ok get or still present at the end, allowing one item per indeterminate
  get), no item consumed twice, nothing consumed that was never put, nothing
  both consumed and still present; and the sequential znodes the puts create
  keep their guarantee: no name handed out twice, names growing with their
  creation zxid, no sequential create refused NodeExists.
- ``check_counter``: the final value lies within [sum of acknowledged
  increments, that + sum of indeterminate ones]; reads within one session
  never go backwards.
- ``check_elected``: a leader was elected at all, and again in the healed
  final phase (every earlier leader's session had ended by then).
"""

from __future__ import annotations

import itertools
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
        seq_problems, names = _sequence_problems(q, puts)
        problems.extend(seq_problems)
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
            "sequential_names": names,
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
    seq = sum(d["sequential_names"] for d in details.values())
    if not total:
        return Result.unknown(name, "no put was acknowledged, so nothing was checked", details=details)
    return Result.ok(
        name,
        f"{total} acknowledged puts all accounted for, none consumed twice"
        + (f"; {seq} sequential names unique and increasing" if seq else ""),
        {q: {"consumed": d["consumed"], "present": d["present"]} for q, d in details.items()},
        details=details,
    )


def _sequence_problems(q: str, puts: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """The sequential-znode guarantee behind every put: the server appends the parent's
    counter, so a name is never handed out twice and names grow with their creation
    (ZooKeeper Programmer's Guide, "Sequence Nodes": a monotonically increasing counter,
    unique to the parent znode). Witnesses: an ok put's ``[q, n, path, czxid]`` (clients
    that report them) and a put refused NodeExists (the server chose a name already taken).
    Returns the problems and how many created names were compared."""
    problems: list[dict[str, Any]] = []
    collided = [o for o in puts if o.status == FAIL and o.completion is not None and o.completion.error == "NodeExists"]
    if collided:
        problems.append(
            {
                "queue": q,
                "kind": "sequential-create-collided",
                "items": [o.input[1] for o in collided[:MAX_SHOWN]],
                "why": f"{q}: {len(collided)} put(s) failed NodeExists, first op {collided[0].index}: a sequential "
                "create's name is new by construction (the parent's counter), so it can never collide",
            }
        )
    created: dict[str, list[tuple[int, int, str, Any]]] = {}  # parent -> [(czxid, counter, name, op)]
    for o in puts:
        out = o.output if o.status == OK else None
        if not (isinstance(out, list) and len(out) == 4 and isinstance(out[2], str) and isinstance(out[3], int)):
            continue
        path, czxid = out[2], out[3]
        parent, _, name = path.rpartition("/")
        digits = name[-10:]
        if len(name) < 10 or not digits.isdigit():
            problems.append(
                {
                    "queue": q,
                    "kind": "not-sequential",
                    "items": [path],
                    "why": f"{q}: put op {o.index} created {path!r}, which does not end in a 10-digit sequence number",
                }
            )
            continue
        created.setdefault(parent, []).append((czxid, int(digits), name, o))
    names = 0
    for parent, rows in sorted(created.items()):
        names += len(rows)
        by_name: dict[str, Any] = {}
        for _, _, name, o in rows:
            if name in by_name:
                problems.append(
                    {
                        "queue": q,
                        "kind": "sequential-name-reused",
                        "items": [f"{parent}/{name}"],
                        "why": f"{q}: {parent}/{name} was created for put op {by_name[name].index} (item "
                        f"{by_name[name].input[1]}) and again for put op {o.index} (item {o.input[1]})",
                    }
                )
            by_name[name] = o
        rows.sort(key=lambda r: (r[0], r[1]))
        for (z1, c1, n1, o1), (z2, c2, n2, o2) in itertools.pairwise(rows):
            if n1 != n2 and (z1 == z2 or c2 <= c1):
                problems.append(
                    {
                        "queue": q,
                        "kind": "sequence-not-increasing",
                        "items": [f"{parent}/{n1}", f"{parent}/{n2}"],
                        "why": f"{q}: {parent}/{n1} (put op {o1.index}, czxid {z1:#x}) and {parent}/{n2} (put op "
                        f"{o2.index}, czxid {z2:#x}): the later creation must carry the larger sequence number",
                    }
                )
                break  # one witness per parent is enough
    return problems, names


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
