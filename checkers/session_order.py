"""Session guarantees: single system image and read-your-writes.

ZooKeeper's documented guarantees (Programmer's Guide, "Consistency
Guarantees"; "ZooKeeper Sessions"):

- *Single system image*: "a client will see the same view of the service
  regardless of the server that it connects to" -- a client never sees the
  tree go back in time, also when it reconnects to another server (a server
  behind the client's last zxid refuses the connection). So the zxids a
  session observes (the reply header's zxid of every answered request) never
  decrease, in the session's own order.
- *Read your writes* (follows from sequential consistency per client and the
  above): once a session's write to a key was acknowledged, that session's
  later reads of the key see that write or a newer one.

``check(history, register_ops)``: ``history`` is the raw ``Op`` list; a
completion's ``session`` (or, when absent, its process) names the session.
``register_ops`` (optional) are paired register operations with ``key`` set
and values unwrapped (``workloads.checks.register_operations``), values unique
per key: reads output a value, writes input it, cas inputs ``[old, new]``.
A read "sees a newer write" when the write whose value it returned has a zxid
at least the session's own write's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.history import FAIL, INVOKE, NEMESIS, OK, Op, Operation
from checkers.result import Result

NAME = "session-order"


def _session(op: Op) -> Any:
    return (op.process, op.session)


def _zxid_order(history: list[Op]) -> tuple[int, list[dict[str, Any]]]:
    last: dict[Any, tuple[int, Op]] = {}  # session -> (its last zxid, the op that saw it)
    judged, problems = 0, []
    for op in history:
        zxid = op.zxid
        if op.process == NEMESIS or op.type not in (OK, FAIL) or zxid is None:
            continue
        s = _session(op)
        got = last.get(s)
        if got is not None:
            prev_zxid, prev = got
            judged += 1
            if zxid < prev_zxid:
                problems.append(
                    {
                        "kind": "zxid-went-back",
                        "session": op.session,
                        "process": op.process,
                        "ops": [prev.index, op.index],
                        "nodes": [prev.node, op.node],
                        "why": f"session {op.session} (process {op.process}) saw zxid {prev_zxid:#x} "
                        f"at op {prev.index} on {prev.node}, then the lower {zxid:#x} at op "
                        f"{op.index} on {op.node}: the tree went back in time",
                    }
                )
                continue
        last[s] = (zxid, op)
    return judged, problems


def _written(op: Operation) -> Any:
    return op.input[1] if op.f == "cas" else op.input


def _read_your_writes(ops: list[Operation]) -> tuple[int, list[dict[str, Any]]]:
    writer: dict[tuple[Any, Any], Operation] = {}
    for o in ops:
        if o.f in ("write", "cas") and o.status != FAIL:
            writer[o.key, _written(o)] = o
    own: dict[tuple[Any, Any], Operation] = {}  # (session, key) -> last acknowledged write
    judged, problems = 0, []
    for o in sorted(ops, key=lambda o: o.return_index if o.return_index is not None else 1 << 62):
        if o.status != OK or o.completion is None:
            continue
        s = _session(o.completion)
        if o.f in ("write", "cas"):
            own[s, o.key] = o
            continue
        if o.f != "read" or (s, o.key) not in own:
            continue
        mine = own[s, o.key]
        seen = writer.get((o.key, o.output)) if o.output is not None else None
        if seen is mine:
            judged += 1
            continue
        zm = mine.completion.zxid if mine.completion else None
        zs = seen.completion.zxid if seen and seen.completion else None
        if o.output is not None and (seen is None or zs is None or zm is None):
            continue  # no order known between the value read and the own write
        judged += 1
        # past the skip above, a read of a value has both zxids
        if o.output is None or (zs is not None and zm is not None and zs < zm):
            at = f", zxid {zm:#x}" if zm is not None else ""
            problems.append(
                {
                    "kind": "missed-own-write",
                    "session": o.completion.session,
                    "process": o.process,
                    "ops": [mine.index, o.index],
                    "key": o.key,
                    "why": f"session {o.completion.session} (process {o.process}) wrote "
                    f"{_written(mine)!r} to key {o.key!r} (op {mine.index}{at}) "
                    f"and then read {o.output!r} (op {o.index} on {o.completion.node}), "
                    "an older value",
                }
            )
    return judged, problems


def check(history: Iterable[Op], register_ops: Iterable[Operation] | None = None) -> Result:
    history = list(history)
    z_judged, problems = _zxid_order(history)
    r_judged, ryw = _read_your_writes(list(register_ops)) if register_ops is not None else (0, [])
    problems += ryw
    sessions = {_session(o) for o in history if o.process != NEMESIS and o.type != INVOKE and o.zxid is not None}
    details = {
        "sessions": len(sessions),
        "zxid_pairs_checked": z_judged,
        "own_reads_checked": r_judged,
        "moves": sum(1 for a, b in _moves(history) if a != b),
    }
    if problems:
        kinds = sorted({p["kind"] for p in problems})
        return Result.illegal(
            NAME,
            f"{len(problems)} session-order violation(s): {', '.join(kinds)}",
            "\n".join(p["why"] for p in problems[:20]),
            {"problems": problems[:50]},
            details,
        )
    if not z_judged:
        return Result.unknown(
            NAME,
            "no session completed two ops with zxids",
            "Nothing to compare: the session order was not tested.",
            {**details, "vacuous": True},
        )
    return Result.ok(
        NAME,
        f"{len(sessions)} session(s) never saw a zxid go back "
        f"({z_judged} pairs, {details['moves']} server moves) and read their own "
        f"writes ({r_judged} reads)",
        {"zxid_pairs_checked": z_judged, "own_reads_checked": r_judged},
        details=details,
    )


def _moves(history: list[Op]) -> Iterable[tuple[Any, Any]]:
    """(previous node, node) for consecutive answered ops of each session."""
    last: dict[Any, Any] = {}
    for op in history:
        if op.process == NEMESIS or op.type not in (OK, FAIL) or op.node is None:
            continue
        s = _session(op)
        if s in last:
            yield last[s], op.node
        last[s] = op.node
