"""The workloads' checkers: pure functions of a history.

``linearizable_per_key`` / ``sequential_registers`` adapt the register
workload's ``[key, arg]`` values to ``checkers.linearizable`` /
``checkers.sequential`` (paired operations with ``key`` set, so the models
partition by key). ``check_set``, ``check_lock`` and ``check_sessions`` are
written here: they are specific to what these workloads record.

Every checker returns a ``checkers.result.Result``: valid only with a
witness, invalid only with a counterexample, otherwise "unknown".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from checkers.history import FAIL, INFO, OK, UNKNOWN_VALUE, Op, Operation, pair
from checkers.result import Result

REGISTER_FS = ("read", "write", "cas")


# ---------------------------------------------------------------- register
def register_operations(history: Iterable[Op], fs: tuple[str, ...] = REGISTER_FS) -> list[Operation]:
    """Paired register ops with ``key`` set and ``[key, x]`` values unwrapped."""
    out = []
    for op in pair(list(history)):
        if op.f not in fs:
            continue
        inp = op.input
        if not isinstance(inp, (list, tuple)) or len(inp) != 2:
            raise ValueError(f"register op {op.f} at index {op.index} has value {inp!r}; expected [key, arg]")
        key, arg = inp
        output = op.output
        if output is not UNKNOWN_VALUE and isinstance(output, (list, tuple)) and len(output) == 2:
            output = output[1]
        out.append(dataclasses.replace(op, key=key, input=arg, output=output))
    return out


def linearizable_per_key(history: Iterable[Op], budget_s: float | None = 60.0, reads: bool = False) -> Result:
    """Writes and cas, per key, against the cas-register model; reads too
    when ``reads`` (linearizable reads: etcd's default). Otherwise reads are
    left out: ZooKeeper serves them locally, so they need not be linearizable
    (even after sync, ZOOKEEPER-1675)."""
    from checkers import linearizable, models

    ops = register_operations(history, fs=REGISTER_FS if reads else ("write", "cas"))
    return linearizable.check(ops, models.get_model("cas-register", initial=None), budget_s=budget_s)


def sequential_registers(history: Iterable[Op], budget_s: float | None = 60.0) -> Result:
    """Every op, reads included, against ZooKeeper's ordered sequential
    consistency over all keys (one total order; not split by key)."""
    from checkers import models, sequential

    ops = register_operations(history)
    return sequential.check(ops, models.get_model("cas-register", initial=None), budget_s=budget_s)


def fresh_after_sync(history: Iterable[Op]) -> Result:
    """With ``--reads sync``: every read (sync then get) observes every write
    acknowledged before it was invoked (``checkers.fresh_reads``)."""
    from checkers import fresh_reads

    return fresh_reads.check(register_operations(history))


def session_order(history: Iterable[Op], registers: bool = True) -> Result:
    """Sessions never see a zxid go back, and (``registers``) read their own
    register writes (``checkers.session_order``)."""
    from checkers import session_order as so

    history = list(history)
    return so.check(history, register_operations(history) if registers else None)


# --------------------------------------------------------------------- set
def _final_read(ops: list[Operation]) -> Operation | None:
    """The last ok ``final-read``, if no add was invoked after it (else None:
    the final read is missing, e.g. it timed out)."""
    reads = [o for o in ops if o.f == "final-read" and o.status == OK]
    if not reads:
        return None
    final = max(reads, key=lambda o: o.call_index)
    if any(o.f == "add" and o.call_index > final.call_index for o in ops):
        return None
    return final


def check_set(history: Iterable[Op]) -> Result:
    """Set-full, simplified to a final read (see workloads/set.py).

    lost: acknowledged adds missing from the final read (invalid);
    unexpected: elements never attempted, or whose add definitely failed
    (invalid); recovered: indeterminate adds present; stale: reads that miss
    an add acknowledged before they were invoked (allowed for local reads),
    own-stale: a read missing an add its own process had acknowledged
    (invalid: ZooKeeper keeps each client's order)."""
    name = "set-full"
    ops = pair(list(history))
    adds = [o for o in ops if o.f == "add"]
    final = _final_read(ops)
    if final is None:
        return Result.unknown(
            name,
            "no final read after the last add completed",
            "The final read did not complete (or was not run), so nothing can be said about lost adds.",
            {"adds": len(adds)},
        )
    present = set(final.output or [])
    ok = {o.input: o for o in adds if o.status == OK}
    info = {o.input for o in adds if o.status == INFO}
    failed = {o.input for o in adds if o.status == FAIL}
    attempted = set(ok) | info
    lost = sorted(v for v in ok if v not in present)
    unexpected = sorted((v for v in present if v not in attempted), key=str)
    recovered = sorted(v for v in info if v in present)
    stale, own_stale = 0, []
    for r in (o for o in ops if o.f == "read" and o.status == OK and o is not final):
        seen = set(r.output or [])
        for v, a in ok.items():
            if a.return_index is not None and a.return_index < r.call_index and v not in seen:
                if a.process == r.process:
                    own_stale.append({"read": r.index, "add": a.index, "value": v})
                else:
                    stale += 1
    details = {
        "acknowledged": len(ok),
        "indeterminate": len(info),
        "failed": len(failed),
        "final_size": len(present),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "recovered": len(recovered),
        "stale_reads": stale,
        "own_stale_reads": len(own_stale),
    }
    if lost or unexpected or own_stale:
        parts = []
        if lost:
            parts.append(f"{len(lost)} acknowledged add(s) missing from the final read: {lost[:20]}")
        if unexpected:
            parts.append(f"{len(unexpected)} element(s) never successfully attempted: {unexpected[:20]}")
        if own_stale:
            parts.append(
                f"{len(own_stale)} read(s) missed an add acknowledged earlier to the same process: {own_stale[:5]}"
            )
        return Result.illegal(
            name,
            "; ".join(p.split(":")[0] for p in parts),
            "\n".join(parts),
            {"lost": lost, "unexpected": unexpected, "own_stale": own_stale[:50], "final_read_index": final.index},
            details,
        )
    return Result.ok(
        name,
        f"all {len(ok)} acknowledged adds present, nothing unexpected "
        f"({len(recovered)} recovered, {stale} stale reads)",
        {"final_read_index": final.index, "present": len(present)},
        details=details,
    )


# -------------------------------------------------------------------- lock
def _chain(writes: list[Operation], indeterminate: int) -> list[dict[str, Any]]:
    """Problems in the zxid-ordered (read, wrote) chain of a counter:
    overlaps (two writes read the same value), backwards (a write read less
    than the previous wrote) and gaps not explained by indeterminate writes."""
    problems: list[dict[str, Any]] = []
    prev: Operation | None = None
    readers: dict[Any, Operation] = {}
    gaps = 0
    for w in writes:
        r = w.output["read"]
        if r in readers:
            problems.append(
                {
                    "kind": "overlap",
                    "ops": [readers[r].index, w.index],
                    "read": r,
                    "why": f"ops {readers[r].index} and {w.index} both read {r} and "
                    f"wrote {r + 1}: they held the resource at the same time",
                }
            )
        readers.setdefault(r, w)
        if prev is not None:
            last = prev.output["wrote"]
            if r < last and readers[r] is w:
                problems.append(
                    {
                        "kind": "backwards",
                        "ops": [prev.index, w.index],
                        "why": f"op {w.index} read {r} after op {prev.index} had written {last} (zxid order)",
                    }
                )
            elif r > last:
                gaps += r - last
        token = w.output.get("token")
        last_token = prev.output.get("token") if prev is not None else None
        if prev is not None and isinstance(token, int) and isinstance(last_token, int) and token < last_token:
            # etcd's lock: the lock key's revision is a fencing token; a write
            # under an older token after one under a newer token means a
            # holder that had lost the lock still wrote.
            problems.append(
                {
                    "kind": "token-regression",
                    "ops": [prev.index, w.index],
                    "why": f"op {w.index} wrote under fencing token {token} after op {prev.index} "
                    f"had written under the newer token {last_token} (revision order)",
                }
            )
        prev = w
    if gaps > indeterminate:
        problems.append(
            {
                "kind": "unexplained-gap",
                "ops": [],
                "why": f"the counter skipped {gaps} value(s) but only {indeterminate} write(s) were indeterminate",
            }
        )
    return problems


def check_lock(history: Iterable[Op]) -> Result:
    """Fenced writes must form one chain in zxid order (no overlap, never
    backwards; with fencing tokens -- etcd's lock revision, ``"token"`` --
    never an older token after a newer one); unfenced problems are findings
    (the verdict stays valid)."""
    name = "lock-fencing"
    ops = pair(list(history))
    found: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for f in ("fenced-write", "unfenced-write"):
        mine = [o for o in ops if o.f == f]
        ok = [o for o in mine if o.status == OK and isinstance(o.output, dict)]
        missing = [o.index for o in ok if o.output.get("write_zxid") is None]
        if missing and f == "fenced-write":
            return Result.unknown(
                name,
                f"{len(missing)} fenced write(s) have no zxid",
                "Without the writes' zxids their order is unknown.",
                {"ops": missing[:20]},
            )
        ok.sort(key=lambda o: (o.output.get("write_zxid") or 0, o.call_index))
        indeterminate = sum(1 for o in mine if o.status == INFO)
        found[f] = _chain(ok, indeterminate)
        counts[f] = {
            "ok": len(ok),
            "indeterminate": indeterminate,
            "failed": sum(1 for o in mine if o.status == FAIL),
            "fence_rejected": sum(
                1
                for o in mine
                if o.status == FAIL
                and o.completion is not None
                and str(o.completion.error or "").startswith("fence-rejected")
            ),
        }
    details = {"counts": counts, "unfenced_findings": found["unfenced-write"]}
    if found["fenced-write"]:
        probs = found["fenced-write"]
        return Result.illegal(
            name,
            f"{len(probs)} fencing violation(s): {', '.join(sorted({p['kind'] for p in probs}))}",
            "\n".join(p["why"] for p in probs[:20]),
            {"fenced": probs[:50]},
            details,
        )
    n_unf = len(found["unfenced-write"])
    note = f"; {n_unf} unfenced finding(s) (expected: locks without fencing are unsafe)" if n_unf else ""
    return Result.ok(
        name,
        f"{counts['fenced-write']['ok']} fenced writes form one chain{note}",
        {"fenced_chain_length": counts["fenced-write"]["ok"]},
        "\n".join(p["why"] for p in found["unfenced-write"][:20]) or "",
        details,
    )


# ----------------------------------------------------------------- session
def _named(node: str, names: set[str]) -> bool:
    """``node`` is one of ``names``, or a sequential znode made from one of them (a create
    that did not complete knows only the prefix the server appends 10 digits to)."""
    return node in names or (len(node) > 10 and node[-10:].isdigit() and node[:-10] in names)


def check_sessions(history: Iterable[Op]) -> Result:
    """Ephemerals of dead sessions are gone; those of live sessions remain
    (see workloads/session.py for which sessions count as dead or live)."""
    name = "session-ephemerals"
    ops = pair(list(history))
    created: dict[str, str | None] = {}  # node -> session (ok creates)
    maybe: set[str] = set()  # nodes of indeterminate creates
    dead: dict[str, str] = {}  # session -> why
    # session -> history position by which its end is proven (the completion of the
    # op that showed it): only a final read *called* after that must not see it.
    dead_by: dict[str, int] = {}
    last_sid: dict[Any, str] = {}
    unsure: set[Any] = set()  # processes with an unconfirmed close since
    finals = []
    for o in ops:
        if o.f == "close" and o.status != OK:
            unsure.add(o.process)
        if o.f == "create" and o.status == INFO and o.completion is not None and isinstance(o.completion.value, dict):
            node = o.completion.value.get("node")
            if node is not None:  # a create whose name is not known adds none to the count
                maybe.add(node)
        out = o.output if o.status == OK and isinstance(o.output, dict) else None
        if out is None:
            continue
        sid = out.get("session")
        prev = last_sid.get(o.process)
        proven = o.return_index if o.return_index is not None else o.call_index
        for gone in out.get("expired") or ():
            if gone not in dead:
                dead[gone], dead_by[gone] = f"reported expired by a server before op {o.index} returned", proven
        if o.f == "close":
            closed = out.get("closed")
            if closed is not None:
                dead[closed] = f"closed by op {o.index}"
                dead_by[closed] = min(dead_by.get(closed, proven), proven)
        elif prev is not None and sid != prev and o.process not in unsure and "expired" not in out:
            # A history without expiry reports (older versions): kazoo opens a new
            # session only once the old one has expired. With reports, a session
            # that changed without one is not judged (the client was reopened).
            if prev not in dead:
                dead[prev], dead_by[prev] = f"replaced by {sid} (expired) before op {o.index} returned", proven
        unsure.discard(o.process)
        if sid is not None:
            last_sid[o.process] = sid
        if o.f == "create":
            created[out["node"]] = sid
        elif o.f == "final-read":
            finals.append(o)
    if not finals:
        return Result.unknown(
            name,
            "no final read completed",
            "Without a final read nothing can be said about ephemerals.",
            {"creates": len(created)},
        )
    indeterminate = sum(1 for o in ops if o.f == "create" and o.status == INFO)
    problems: list[dict[str, Any]] = []
    for fr in finals:
        nodes: dict[str, Any] = fr.output.get("nodes", {})
        live = fr.output.get("session")
        for node, owner in nodes.items():
            if owner in dead and fr.call_index < dead_by[owner]:
                # The read may have run before the session ended (e.g. another
                # process learned of the expiry only later): nothing to judge.
                continue
            if owner in dead:
                problems.append(
                    {
                        "kind": "survived",
                        "node": node,
                        "session": owner,
                        "read": fr.index,
                        "why": f"{node} of session {owner} is still "
                        f"there at read {fr.index}, but that session was {dead[owner]}",
                    }
                )
            elif node not in created and not _named(node, maybe) and len(maybe) >= indeterminate:
                problems.append(
                    {
                        "kind": "unexpected",
                        "node": node,
                        "read": fr.index,
                        "why": f"{node} was never created by an acknowledged op",
                    }
                )
        for node, sid in created.items():
            if sid == live and node not in nodes:
                problems.append(
                    {
                        "kind": "vanished",
                        "node": node,
                        "session": sid,
                        "read": fr.index,
                        "why": f"{node} of live session {sid} is missing from that session's own final read {fr.index}",
                    }
                )
    details = {
        "creates": len(created),
        "indeterminate_creates": indeterminate,
        "dead_sessions": len(dead),
        "final_reads": len(finals),
    }
    if problems:
        return Result.illegal(
            name,
            f"{len(problems)} ephemeral problem(s): {', '.join(sorted({p['kind'] for p in problems}))}",
            "\n".join(p["why"] for p in problems[:20]),
            {"problems": problems[:50]},
            details,
        )
    return Result.ok(
        name,
        f"{len(finals)} final read(s) agree with {len(dead)} dead and "
        f"{len(set(last_sid.values()) - set(dead))} live session(s)",
        {"final_reads": [f.index for f in finals]},
        details=details,
    )
