"""Converged replicas: after the final heal, every node holds the same tree.

The guarantee: ZooKeeper replicates one totally ordered log of transactions
(Zab; squall's Raft), so once the cluster is healed and quiet and each server
has caught up (a ``sync`` through it), every server's copy of every znode is
the same: same data, same version, same mzxid (ZooKeeper Programmer's Guide,
"Consistency Guarantees": single system image, and Zab's agreement). A node
that applied entries the others overwrote -- a diverged replica -- differs.

Input: the history's ``converge`` ops, which the runner records after the
final phase: one op per node and round, process ``"converge-<node>"``, ok
value ``{"round": r, "node": n, "sync_zxid": z, "paths": {path: [data,
version, mzxid]}}`` (a snapshot read from that node alone), or ``fail``
with value ``{"round": r, "node": n}`` when the node could not be read. Rounds repeat until the snapshots agree
(an ephemeral of a session expiring meanwhile can make one round differ), so
only the last round is judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.history import FAIL, OK, Op
from checkers.result import Result

NAME = "converged-replicas"
F = "converge"


def check(history: Iterable[Op]) -> Result:
    snaps = [o for o in history if o.f == F and o.type in (OK, FAIL)]
    if not snaps:
        return Result.unknown(
            NAME,
            "no replica snapshots were taken",
            "The runner read no node after the final phase, so convergence was not tested.",
        )
    last = max(_round(o) for o in snaps)
    this = [o for o in snaps if _round(o) == last]
    failed = [o for o in this if o.type == FAIL]
    got = {o.value["node"]: o.value for o in this if o.type == OK}
    details = {"rounds": last + 1, "nodes": sorted(got), "unreadable": [_node(o) for o in failed]}
    if len(got) < 2 and failed:
        return Result.unknown(
            NAME,
            f"only {len(got)} node(s) could be read after the final phase",
            "\n".join(f"{_node(o)}: {o.error}" for o in failed),
            details,
        )
    nodes = sorted(got)
    paths = sorted(set().union(*(g["paths"] for g in got.values())))
    diverged = []
    for p in paths:
        views = {n: got[n]["paths"].get(p) for n in nodes}
        if len({repr(v) for v in views.values()}) > 1:
            diverged.append(
                {
                    "path": p,
                    "views": {
                        n: (None if v is None else {"data": v[0], "version": v[1], "mzxid": v[2]})
                        for n, v in views.items()
                    },
                }
            )
    details.update(paths=len(paths), sync_zxids={n: got[n].get("sync_zxid") for n in nodes})
    if diverged:
        lines = []
        for d in diverged[:20]:
            parts = ", ".join(
                f"{n}: "
                + ("absent" if v is None else f"data={v['data']!r} version={v['version']} mzxid={v['mzxid']:#x}")
                for n, v in d["views"].items()
            )
            lines.append(f"{d['path']}: {parts}")
        bad_nodes = sorted(
            {
                n
                for d in diverged
                for n, v in d["views"].items()
                if repr(v) != repr(_majority(list(d["views"].values())))
            }
        )
        return Result.illegal(
            NAME,
            f"{len(diverged)} znode(s) differ across nodes after healing "
            f"(diverged: {', '.join(bad_nodes) or 'no majority'})",
            "After the final heal, recovery and a sync on each node, the nodes still disagree:\n" + "\n".join(lines),
            {"diverged": diverged[:100], "nodes": bad_nodes},
            details,
        )
    if failed:
        return Result.unknown(
            NAME,
            f"{len(got)} node(s) agree but {len(failed)} could not be read",
            "\n".join(f"{_node(o)}: {o.error}" for o in failed),
            details,
        )
    return Result.ok(
        NAME,
        f"{len(nodes)} nodes hold the same {len(paths)} znode(s) (data, version, mzxid)",
        {"nodes": nodes, "paths": len(paths)},
        details=details,
    )


def _node(op: Op) -> str:
    return str(op.process).removeprefix("converge-")


def _round(op: Op) -> int:
    v = op.value if isinstance(op.value, dict) else {}
    return int(v.get("round", 0))


def _majority(views: list[Any]) -> Any:
    counts: dict[str, int] = {}
    for v in views:
        counts[repr(v)] = counts.get(repr(v), 0) + 1
    best = max(counts.values())
    winners = [k for k, c in counts.items() if c == best]
    if len(winners) != 1 or best * 2 <= len(views):
        return object()  # no majority: every node is named
    return next(v for v in views if repr(v) == winners[0])
