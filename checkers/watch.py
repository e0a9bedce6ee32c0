"""Checks for the watch workload (``workloads/watch.py``): pure functions of
a history of ``write``, ``write-burst``, ``watch-read``, ``pwatch-read`` and
``exists-read`` ops.

ok values (``key`` a znode name, ``version`` its data version):

- ``write``: ``[key, data, version]`` -- setData's new Stat; ``version`` is
  null for a write that created or deleted a znode (a child key's child, or
  an exists key's znode): it has no data version to report (a child key's
  reads carry the child version, cversion).
- ``write-burst``: ``[key, [[data, version], ...]]`` -- pipelined setData
  calls of one client, in the order sent.
- ``watch-read``: ``{"key", "data", "version", "client", "session"}`` and, when the
  previous one-shot watch on that key was set on this connection (or
  re-registered on it),
  ``"armed"`` (the version it was set at) and ``"fired"`` (its
  NodeDataChanged notification arrived before this read's reply); with
  ``"moved": true`` when the watch was re-registered (setWatches) on a new
  connection of the same session in between.
- ``pwatch-read``: the same, and when a previous read of the key on the
  same connection follows the persistent-recursive watch,
  ``"prev_version"`` and ``"events"`` (NodeDataChanged notifications for
  the key that arrived between the two replies).
- ``exists-read``: ``{"key", "state", "client", "session"}`` (``state``:
  "absent", or the znode's czxid) and, as a watch-read's, ``"armed"`` (the
  state the exists watch was set in) and ``"fired"`` (any notification for
  the znode arrived before this read's reply).

``check_watch(history)`` merges seven checks:

- ``watch-version-agreement``: one data value per (key, version) across
  every client's reads and the writers' acknowledgements (every client sees
  the same sequence of changes);
- ``watch-write-order``: a key's acknowledged writes, in zxid order, have
  increasing versions (the change order is the zxid order);
- ``watch-monotonic``: one session never reads a key at an older version
  than it already read (single system image);
- ``watch-one-shot``: a one-shot watch set at version n fires iff a read
  that follows sees a version > n -- its event comes before the new data
  (ordered with respect to replies) and it never fires without a change;
- ``watch-persistent``: a persistent-recursive watch delivers one event per
  change: between two reads on one connection, events == version delta;
- ``watch-fifo``: a client's pipelined writes apply in the order it sent
  them (their versions grow in that order);
- ``watch-exists``: an exists watch set while a znode was in one state
  ("absent", or present with some czxid) fires before a read on that
  connection shows another state. (A watch that fired with the same state
  read again proves nothing: the znode may have come and gone.)
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from checkers.history import OK, Op
from checkers.result import Result, merge, run_checker

MAX_SHOWN = 10


def _oks(history: Iterable[Op], f: str) -> list[Op]:
    return [op for op in history if op.f == f and op.type == OK]


def _reads(history: list[Op]) -> list[Op]:
    return [
        op for op in history if op.type == OK and op.f in ("watch-read", "pwatch-read") and isinstance(op.value, dict)
    ]


def check_watch(history: Iterable[Op]) -> Result:
    history = list(history)
    checks = [
        ("watch-version-agreement", version_agreement),
        ("watch-write-order", write_order),
        ("watch-monotonic", monotonic),
        ("watch-one-shot", one_shot),
        ("watch-persistent", persistent),
        ("watch-fifo", fifo),
        ("watch-exists", exists_watch),
    ]
    return merge([run_checker(name, fn, history) for name, fn in checks], checker="watch")


def version_agreement(history: list[Op]) -> Result:
    name = "watch-version-agreement"
    seen: dict[tuple[Any, int], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for op in _oks(history, "write"):
        key, data, version = op.value
        if version is not None:
            seen[(key, version)][data].append(op.index)
    for op in _oks(history, "write-burst"):
        key, pairs = op.value
        for data, version in pairs:
            seen[(key, version)][data].append(op.index)
    for op in _reads(history):
        v = op.value
        seen[(v["key"], v["version"])][v["data"]].append(op.index)
    if not seen:
        return Result.unknown(name, "no acknowledged write or read to compare")
    bad = [
        {"key": k, "version": ver, "values": {d: idx[:5] for d, idx in datas.items()}}
        for (k, ver), datas in seen.items()
        if len(datas) > 1
    ]
    if bad:
        return Result.illegal(
            name,
            f"{len(bad)} (key, version) pair(s) seen with different data",
            "Clients disagree on what a key held at one version, so they did not "
            f"see one sequence of changes; first: {bad[0]}",
            {"conflicts": bad[:MAX_SHOWN]},
        )
    return Result.ok(name, f"{len(seen)} (key, version) pairs, each with one value", {"pairs": len(seen)})


def write_order(history: list[Op]) -> Result:
    name = "watch-write-order"
    by_key: dict[Any, list[tuple[int, Op]]] = defaultdict(list)  # key -> (zxid, write)
    for op in _oks(history, "write"):
        if op.zxid is not None and op.value[2] is not None:
            by_key[op.value[0]].append((op.zxid, op))
    if not by_key:
        return Result.unknown(name, "no acknowledged write with a zxid")
    bad = []
    for key, writes in by_key.items():
        writes.sort(key=lambda w: w[0])
        for (_, a), (_, b) in itertools.pairwise(writes):
            if b.value[2] <= a.value[2]:
                bad.append({"key": key, "earlier": a.to_dict(), "later": b.to_dict()})
    if bad:
        return Result.illegal(
            name,
            f"{len(bad)} write(s) whose version does not follow zxid order",
            f"A key's versions must grow with the zxids of its writes; first: {bad[0]}",
            {"out_of_order": bad[:MAX_SHOWN]},
        )
    n = sum(len(v) for v in by_key.values())
    return Result.ok(name, f"{n} writes over {len(by_key)} keys in zxid order", {"writes": n, "keys": len(by_key)})


def monotonic(history: list[Op]) -> Result:
    name = "watch-monotonic"
    last: dict[tuple, Op] = {}
    bad, compared = [], 0
    for op in _reads(history):
        v = op.value
        # a new session may start on a server that is behind (kazoo resets
        # its last zxid on expiry), so the rule holds per session
        k = (op.process, v.get("client"), v.get("session"), v["key"])
        prev = last.get(k)
        if prev is not None:
            compared += 1
            if v["version"] < prev.value["version"]:
                bad.append({"earlier": prev.to_dict(), "later": op.to_dict()})
        last[k] = op
    if bad:
        return Result.illegal(
            name,
            f"{len(bad)} read(s) went back in time",
            f"A client read a key at an older version than it had read before; first: {bad[0]}",
            {"backwards": bad[:MAX_SHOWN]},
        )
    if not compared:
        return Result.unknown(name, "no client read one key twice")
    return Result.ok(name, f"{compared} successive reads never went back", {"compared": compared})


def _armed_reads(history: list[Op], f: str) -> list[tuple[Op, dict[str, Any]]]:
    """The ok reads of ``f`` that judge the watch the previous read of their key set."""
    return [(op, op.value) for op in _oks(history, f) if isinstance(op.value, dict) and "armed" in op.value]


def one_shot(history: list[Op]) -> Result:
    name = "watch-one-shot"
    bad, fired, quiet, moved = [], 0, 0, 0
    for op, v in _armed_reads(history, "watch-read"):
        moved += bool(v.get("moved"))
        changed = v["version"] > v["armed"]
        if v["fired"] and not changed:
            bad.append({"problem": "fired-without-change", "op": op.to_dict()})
        elif changed and not v["fired"]:
            bad.append({"problem": "data-before-event", "op": op.to_dict()})
        fired += bool(v["fired"])
        quiet += not v["fired"]
    if bad:
        return Result.illegal(
            name,
            f"{len(bad)} one-shot watch violation(s)",
            "A one-shot watch set at version n must fire before the client can "
            "read a version > n, and must not fire without a change; first: "
            f"{bad[0]}",
            {"violations": bad[:MAX_SHOWN]},
        )
    if not fired:
        return Result.unknown(
            name, "no one-shot watch fired between two reads on one connection", details={"quiet": quiet}
        )
    return Result.ok(
        name,
        f"{fired} one-shot watch(es) fired before the new data, {quiet} "
        f"stayed quiet with no change ({moved} across a reconnection)",
        {"fired": fired, "quiet": quiet, "across_reconnection": moved},
    )


def persistent(history: list[Op]) -> Result:
    name = "watch-persistent"
    bad, compared, events = [], 0, 0
    for op in _oks(history, "pwatch-read"):
        v = op.value
        if not isinstance(v, dict) or "prev_version" not in v:
            continue
        compared += 1
        events += v["events"]
        delta = v["version"] - v["prev_version"]
        if v["events"] != delta:
            bad.append(
                {
                    "problem": "missed-events" if v["events"] < delta else "extra-events",
                    "changes": delta,
                    "events": v["events"],
                    "op": op.to_dict(),
                }
            )
    if bad:
        return Result.illegal(
            name,
            f"{len(bad)} persistent watch interval(s) with a wrong event count",
            f"A persistent-recursive watch must deliver one event per change; first: {bad[0]}",
            {"violations": bad[:MAX_SHOWN]},
        )
    if not events:
        return Result.unknown(
            name, "no persistent watch event between two reads on one connection", details={"compared": compared}
        )
    return Result.ok(
        name,
        f"{events} persistent watch events over {compared} intervals, one per change",
        {"intervals": compared, "events": events},
    )


def fifo(history: list[Op]) -> Result:
    """ "Updates from a client will be applied in the order that they were sent": the
    versions of one burst's pipelined writes grow in the order they were sent."""
    name = "watch-fifo"
    bad, bursts = [], 0
    for op in _oks(history, "write-burst"):
        key, pairs = op.value
        bursts += 1
        versions = [v for _, v in pairs]
        if any(b <= a for a, b in itertools.pairwise(versions)):
            bad.append({"key": key, "sent": [d for d, _ in pairs], "versions": versions, "op": op.to_dict()})
    if bad:
        first = bad[0]
        return Result.illegal(
            name,
            f"{len(bad)} burst(s) applied out of the order sent",
            f"A client's updates must apply in the order it sent them; {first['key']}: sent "
            f"{first['sent']}, applied at versions {first['versions']} (op {first['op']['index']})",
            {"out_of_order": bad[:MAX_SHOWN]},
        )
    if not bursts:
        return Result.unknown(name, "no pipelined burst of writes was acknowledged")
    return Result.ok(name, f"{bursts} pipelined burst(s) applied in the order sent", {"bursts": bursts})


def exists_watch(history: list[Op]) -> Result:
    """An exists watch set in one state fires before a read on its connection shows another."""
    name = "watch-exists"
    bad: list[dict[str, Any]] = []
    fired = quiet = 0
    for op, v in _armed_reads(history, "exists-read"):
        if v["state"] != v["armed"] and not v["fired"]:
            bad.append({"problem": "change-before-event", "op": op.to_dict()})
        fired += bool(v["fired"])
        quiet += not v["fired"]
    if bad:
        v = bad[0]["op"]["value"]
        return Result.illegal(
            name,
            f"{len(bad)} exists watch violation(s)",
            "An exists watch set while a znode was in one state must fire before the client can read "
            f"another; first: {v['key']} armed {v['armed']}, read {v['state']}, no event (op {bad[0]['op']['index']})",
            {"violations": bad[:MAX_SHOWN]},
        )
    if not fired:
        return Result.unknown(
            name, "no exists watch fired between two reads on one connection", details={"quiet": quiet}
        )
    return Result.ok(
        name,
        f"{fired} exists watch(es) fired, no read showed a change before its event ({quiet} stayed quiet)",
        {"fired": fired, "quiet": quiet},
    )
