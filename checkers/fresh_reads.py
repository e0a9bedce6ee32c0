"""Fresh reads after ``sync``: ZooKeeper's sync guarantee, per key.

The guarantee (ZooKeeper Programmer's Guide, "Consistency Guarantees" and
``sync``): a client that calls ``sync`` and then reads sees every update
committed before the ``sync`` -- so, since an acknowledged write is
committed, every write acknowledged (to any client) before the ``sync`` was
invoked. The register workload's read with ``--reads sync`` is one op that
sends ``sync`` and then ``getData`` on the same session, so its invocation
comes before the sync's: the writes acknowledged before the *op's*
invocation are a subset of those the sync must cover, and a miss of one of
them is a real violation.

What "missed" means. Every value written to a key is unique, so a read's
value names the write it observed. The read missed an acknowledged write
``w`` when the write it observed is older than ``w``: its zxid is smaller
(zxids order a key's committed writes), or it completed before ``w`` was
invoked (real-time order, for writes without a zxid), or the read found no
value at all. A value written by a crashed write (no zxid, unknown effect
time) proves nothing and is skipped.

Input: paired ``Operation``s with ``key`` set and values unwrapped, as
``workloads.checks.register_operations`` makes them: reads output the value
(None: no znode), writes input the value, cas inputs ``[old, new]``.

Apache ZooKeeper documents that this guarantee can fail: ``sync`` is not a
quorum operation, so a partitioned old leader's followers may serve a stale
read after a sync (ZOOKEEPER-1675). A counterexample carries that reference
in ``known_limitation`` so a report of a run against Apache ZooKeeper can name
it instead of calling it a finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.history import OK, Operation
from checkers.result import Result

NAME = "fresh-after-sync"
KNOWN_LIMITATION = {
    "db": "zookeeper",
    "issue": "ZOOKEEPER-1675",
    "why": "sync is not a quorum operation in Apache ZooKeeper: a server that lost "
    "its leader's quorum can still answer a sync and a stale read",
}


def _written(op: Operation) -> Any:
    return op.input[1] if op.f == "cas" else op.input


def _zxid(op: Operation) -> int | None:
    return op.completion.zxid if op.completion is not None else None


def _older(a: Operation, b: Operation) -> bool:
    """True when write ``a`` certainly committed before write ``b``."""
    za, zb = _zxid(a), _zxid(b)
    if za is not None and zb is not None:
        return za < zb
    return a.return_index is not None and a.return_index < b.call_index


def check(
    ops: Iterable[Operation], read_fs: tuple[str, ...] = ("read",), write_fs: tuple[str, ...] = ("write", "cas")
) -> Result:
    """Every ok read (a sync then a read) observes every write acknowledged
    before the read was invoked."""
    ops = list(ops)
    writes: dict[Any, list[Operation]] = {}
    writer: dict[tuple[Any, Any], Operation] = {}
    for o in ops:
        if o.f in write_fs and o.status != "fail":
            writes.setdefault(o.key, []).append(o)
            v = _written(o)
            if (o.key, v) in writer:
                return Result.unknown(
                    NAME,
                    f"value {v!r} written twice to key {o.key!r}",
                    "Reads name the write they saw by its value; values must be unique per key.",
                    {"ops": [writer[o.key, v].id, o.id]},
                )
            writer[o.key, v] = o
    checked, fresh, problems = 0, [], []
    by_node: dict[str, int] = {}  # reads judged per server: did any run where a lagging member could show?
    for r in ops:
        if r.f not in read_fs or r.status != OK:
            continue
        acked = [
            w
            for w in writes.get(r.key, ())
            if w.status == OK and w.return_index is not None and w.return_index < r.call_index
        ]
        if not acked:
            continue
        seen = writer.get((r.key, r.output)) if r.output is not None else None
        if r.output is not None and (seen is None or seen.status != OK):
            continue  # an unknown value, or a crashed write's: no order to judge by
        checked += 1
        node = str(r.completion.node) if r.completion is not None and r.completion.node is not None else "?"
        by_node[node] = by_node.get(node, 0) + 1
        missed = [w for w in acked if seen is None or (w is not seen and _older(seen, w))]
        if not missed:
            fresh.append(r.call_index)
            continue
        newest = max(missed, key=lambda w: (_zxid(w) or 0, w.return_index))
        problems.append(
            {
                "read": r.invoke.index if r.invoke else r.call_index,
                "sync": f"the sync sent first by op {r.invoke.index if r.invoke else r.call_index}",
                "missed_write": newest.invoke.index if newest.invoke else newest.call_index,
                "key": r.key,
                "read_value": r.output,
                "missed_value": _written(newest),
                "read_node": r.completion.node if r.completion else None,
                "why": (
                    f"read op {r.invoke.index if r.invoke else r.call_index} of key {r.key!r} "
                    f"(sync then get, process {r.process}) returned {r.output!r}, but write op "
                    f"{newest.invoke.index if newest.invoke else newest.call_index} of "
                    f"{_written(newest)!r} (zxid {_zxid(newest)}) was acknowledged before the "
                    f"sync was invoked"
                ),
            }
        )
    details = {"reads_checked": checked, "stale": len(problems), "reads_checked_by_node": dict(sorted(by_node.items()))}
    if problems:
        return Result.illegal(
            NAME,
            f"{len(problems)} read(s) after sync missed an acknowledged write",
            "\n".join(p["why"] for p in problems[:20]),
            {"stale_reads": problems[:50]},
            {**details, "known_limitation": KNOWN_LIMITATION},
        )
    if not checked:
        return Result.unknown(
            NAME,
            "no read after sync had a write acknowledged before it",
            "Nothing constrained any read, so freshness was not tested.",
            details,
        )
    return Result.ok(
        NAME,
        f"all {checked} reads after sync saw every write acknowledged before them",
        {"fresh_reads": fresh[:200]},
        details=details,
    )
