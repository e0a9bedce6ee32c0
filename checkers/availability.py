"""Liveness and availability: a healthy cluster answers.

Safety checkers accept a database that answers nothing; this one does not.
ZooKeeper's documented liveness: the service is available while a majority
of servers is up and can talk to each other ("ZooKeeper Administrator's
Guide": a quorum of 2f+1 servers tolerates f failures), and "if a client
gets a successful return code, the update will have been applied" within
bounded time ("Timeliness", Programmer's Guide). So:

- in every *fault-free stretch* (no fault in effect, from the end of one
  fault to the start of the next, after ``grace_s`` for recovery) the share
  of ops that got an answer must be at least ``min_availability``;
- the *final phase* (after the final heal and recovery) must complete: every
  final op kind the workload runs completes ``ok`` at least once.

What counts as an answer is the workload's: ``kinds`` maps an op name to
"read" or "write" (others are not counted), an ``ok`` is an answer, and a
``fail`` whose error starts with one of ``answered`` is too (e.g. the
register's BadVersion: the server decided). Timeouts, lost connections and
refused connections are not.

The result also carries, per window (each fault and each fault-free
stretch) and per node (the server that answered; the invoked one otherwise),
the share of reads and writes that succeeded -- which side of a partition
kept serving, and what.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.history import FAIL, INVOKE, NEMESIS, OK, Op, Operation, pair
from checkers.result import Result

NAME = "availability"
NS = 1_000_000_000
MIN_OPS = 10  # a stretch with fewer counted ops is too short to judge

_BEGIN = {"kill": "kill", "pause": "pause", "lose-unsynced": "kill"}  # disk: nodes down until start
_END = {"start": "kill", "resume": "pause"}


def _edge(f: str) -> tuple[str, str] | None:
    if f in _BEGIN:
        return "begin", _BEGIN[f]
    if f in _END:
        return "end", _END[f]
    if f.startswith("start-"):
        return "begin", f[6:]
    if f.startswith("stop-"):
        return "end", f[5:]
    if f in ("heal", "heal-all"):
        return "end", "*"
    return None


def fault_windows(history: list[Op]) -> list[dict[str, Any]]:
    """When each fault may have been in effect: from the invocation of the
    nemesis op that began it to the completion of the one that ended it."""
    active: dict[str, tuple[int, str]] = {}
    begun: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    end_t = history[-1].time if history else 0
    for op in history:
        if op.process != NEMESIS:
            continue
        edge = _edge(op.f)
        if edge is None:
            continue
        what, kind = edge
        if op.type == INVOKE:
            if what == "begin":
                begun.setdefault(kind, op.time)
            continue
        if what == "begin":
            if kind not in active:
                label = op.f if op.value is None else f"{op.f} {op.value}"
                active[kind] = (begun.pop(kind, op.time), label[:80])
        else:
            for k in list(active) if kind == "*" else [kind]:
                if k in active:
                    start, label = active.pop(k)
                    out.append({"kind": k, "label": label, "start": start, "end": op.time})
    out.extend({"kind": k, "label": label, "start": s, "end": end_t} for k, (s, label) in active.items())
    return sorted(out, key=lambda w: w["start"])


def _free_stretches(faults: list[dict[str, Any]], start: int, end: int, grace: int) -> list[tuple[int, int]]:
    out, t = [], start
    for w in faults:
        if w["start"] > t:
            out.append((t, w["start"]))
        t = max(t, w["end"] + grace)
    if end > t:
        out.append((t, end))
    return out


def _answered(o: Operation, answered: tuple[str, ...]) -> bool:
    if o.status == OK:
        return True
    err = str(o.completion.error or "") if o.status == FAIL and o.completion is not None else ""
    return bool(answered) and err.startswith(answered)


def _tally() -> dict[str, list[int]]:
    return {"read": [0, 0], "write": [0, 0]}


def _share(t: dict[str, list[int]]) -> dict[str, Any]:
    return {k: {"ok": a, "total": n, "share": (a / n if n else None)} for k, (a, n) in t.items()}


def check(
    history: Iterable[Op],
    kinds: dict[str, str],
    min_availability: float = 0.5,
    answered: tuple[str, ...] = (),
    final_fs: tuple[str, ...] = (),
    grace_s: float = 0.0,
) -> Result:
    history = list(history)
    ops = [o for o in pair(history) if o.f in kinds or o.f in final_fs]
    main = [o for o in ops if o.f not in final_fs]
    finals = [o for o in ops if o.f in final_fs]
    if not main and not finals:
        return Result.unknown(
            NAME,
            "no client op to judge availability by",
            "The run recorded no counted client operation.",
            {"vacuous": True},
        )
    faults = fault_windows(history)
    windows: list[dict[str, Any]] = []
    if main:
        t0, t1 = main[0].call_time, max(o.call_time for o in main)
        for s, e in _free_stretches(faults, t0, t1 + 1, int(grace_s * NS)):
            windows.append({"window": "fault-free", "label": "no fault", "start": s, "end": e})
        windows += [{"window": "fault", "label": w["label"], "start": w["start"], "end": w["end"]} for w in faults]
        windows.sort(key=lambda w: w["start"])
    by_node: dict[str, dict[str, list[int]]] = {}
    for w in windows:
        w["tally"], w["nodes"] = _tally(), {}
    for o in main:
        kind = kinds[o.f]
        ok = _answered(o, answered)
        node = (
            (o.completion.node if o.completion is not None else None)
            or (o.invoke.node if o.invoke is not None else None)
            or "?"
        )
        for t in [by_node.setdefault(node, _tally())] + [
            x
            for w in windows
            if w["start"] <= o.call_time < w["end"]
            for x in (w["tally"], w["nodes"].setdefault(node, _tally()))
        ]:
            t[kind][0] += ok
            t[kind][1] += 1
    table, low = [], []
    for w in windows:
        total = sum(n for _, n in w["tally"].values())
        good = sum(a for a, _ in w["tally"].values())
        row = {
            "window": w["window"],
            "label": w["label"],
            "start_s": round(w["start"] / NS, 3),
            "end_s": round(w["end"] / NS, 3),
            "ops": total,
            "share": (good / total if total else None),
            **_share(w["tally"]),
            "nodes": {n: _share(t) for n, t in sorted(w["nodes"].items())},
        }
        table.append(row)
        if w["window"] == "fault-free" and total >= MIN_OPS and good / total < min_availability:
            low.append(row)
    judged = [r for r in table if r["window"] == "fault-free" and r["ops"] >= MIN_OPS]
    final_kinds = {f: any(o.status == OK for o in finals if o.f == f) for f in sorted({o.f for o in finals})}
    details = {
        "windows": table,
        "nodes": {n: _share(t) for n, t in sorted(by_node.items())},
        "min_availability": min_availability,
        "grace_s": grace_s,
        "final": final_kinds,
    }
    problems = [
        f"fault-free stretch {r['start_s']:.1f}-{r['end_s']:.1f}s: only {r['share']:.0%} of "
        f"{r['ops']} ops answered (minimum {min_availability:.0%})"
        for r in low
    ]
    problems += [
        f"the final phase (after healing) never completed {f} ok" for f, done in final_kinds.items() if not done
    ]
    if problems:
        return Result.illegal(
            NAME,
            f"unavailable: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
            "\n".join(problems),
            {"unavailable": problems, "windows": low},
            details,
        )
    if not judged and not final_kinds:
        return Result.unknown(
            NAME,
            f"no fault-free stretch had {MIN_OPS} ops and there is no final phase: availability was not tested",
            "",
            {**details, "vacuous": True},
        )
    share = [f"{r['share']:.0%}" for r in judged]
    return Result.ok(
        NAME,
        f"available: fault-free stretches answered {', '.join(share) or 'n/a'} of ops; final phase completed"
        if final_kinds
        else f"available: fault-free stretches answered {', '.join(share)} of ops",
        {"fault_free": [{k: r[k] for k in ("start_s", "end_s", "ops", "share")} for r in judged], "final": final_kinds},
        details=details,
    )
