"""Seeded simulations of real linearizable executions, for tests and benches.

``register_history(n_ops, keys, processes, seed)`` runs ``processes`` clients
against an atomic multi-key cas-register: each op is invoked, later takes
effect atomically (its linearization point), later still completes; the
steps of different clients interleave at random, so ops overlap. With
``crash_rate`` some ops complete ``info`` (their effect was applied or not,
at random) and the process is replaced by a fresh one, as Jepsen does. The
result is linearizable by construction, so a checker must call it valid.
"""

from __future__ import annotations

import random
from typing import Any

from checkers.history import FAIL, INFO, INVOKE, OK, Op


def register_history(
    n_ops: int, keys: int = 10, processes: int = 20, seed: int = 0, crash_rate: float = 0.0, values: int = 5
) -> list[Op]:
    rng = random.Random(seed)
    state = {k: None for k in range(keys)}
    ops: list[Op] = []
    # per client slot: None (idle) or [process, f, key, value, phase, result]
    slots: list[list | None] = [None] * processes
    proc_ids = list(range(processes))
    next_proc = processes
    started = 0
    t = 0
    v: Any  # a read's None, a write's value or a cas's [old, new]

    def emit(typ: str, proc: int, f: str, key: int, value: object) -> None:
        nonlocal t
        t += rng.randint(1, 1000)
        ops.append(Op(len(ops), t, typ, proc, f, value, key=key))

    while started < n_ops or any(s is not None for s in slots):
        i = rng.randrange(processes)
        s = slots[i]
        if s is None:
            if started >= n_ops:
                continue
            started += 1
            key = rng.randrange(keys)
            r = rng.random()
            if r < 0.5:
                f, v = "read", None
            elif r < 0.8:
                f, v = "write", rng.randrange(values)
            else:
                f, v = "cas", [rng.randrange(values), rng.randrange(values)]
            slots[i] = [proc_ids[i], f, key, v, 0, None]
            emit(INVOKE, proc_ids[i], f, key, v)
        elif s[4] == 0:
            # the linearization point: apply atomically
            proc, f, key, v = s[0], s[1], s[2], s[3]
            crash = crash_rate and rng.random() < crash_rate
            if crash and rng.random() < 0.5:
                s[4], s[5] = 1, ("crash", None)  # never takes effect
                continue
            if f == "read":
                s[5] = (OK, state[key])
            elif f == "write":
                state[key] = v
                s[5] = (OK, v)
            else:
                if state[key] == v[0]:
                    state[key] = v[1]
                    s[5] = (OK, v)
                else:
                    s[5] = (FAIL, v)
            if crash:
                s[5] = ("crash", None)
            s[4] = 1
        else:
            proc, f, key, v = s[0], s[1], s[2], s[3]
            typ, out = s[5]
            if typ == "crash":
                emit(INFO, proc, f, key, v)
                proc_ids[i] = next_proc  # a crashed client is replaced
                next_proc += 1
            else:
                emit(typ, proc, f, key, out)
            slots[i] = None
    return ops


def zk_history(
    n_ops: int,
    keys: int = 3,
    processes: int = 6,
    replicas: int = 3,
    seed: int = 0,
    crash_rate: float = 0.0,
    sync_reads: bool = True,
    roam_rate: float = 0.1,
) -> list[Op]:
    """A history of a correct ZooKeeper-like system: register ops on
    ``keys`` keys by ``processes`` clients, each connected to one of
    ``replicas`` servers that apply one leader log (zxid = log position) at
    their own pace.

    Writes and cas go through the leader (cas compares the leader's state);
    the client's server applies the write before replying. Reads are local to
    the client's server; with ``sync_reads`` the server first catches up with
    the log as it is when the sync takes effect (after the read's
    invocation). Between ops a client may roam (``roam_rate``) to a server
    that has applied at least the last zxid it saw, keeping its session. Every
    write value is unique. Completions carry ``zxid`` (a write's own; a read's
    server's last applied), ``node`` and ``session``; values are
    ``[key, arg]`` as the register workload records them. ``crash_rate``:
    some ops end ``info`` (applied or not) and the process is replaced by a
    fresh one with a fresh session.
    """
    rng = random.Random(seed)
    log: list[tuple[int, int]] = []  # (key, value); zxid = position + 1
    applied = [0] * replicas
    ops: list[Op] = []
    t = 0
    counter = 0
    # per slot: dict(proc, session, server, seen, op) where op = [f, key, arg, phase, result]
    slots: list[dict[str, Any]] = [
        {"proc": i, "session": f"s{i}", "server": i % replicas, "seen": 0, "op": None} for i in range(processes)
    ]
    next_proc = processes
    started = 0
    arg: Any  # a read's None, a write's value or a cas's [old, new]

    def state(r: int, key: int) -> int | None:
        for k, v in reversed(log[: applied[r]]):
            if k == key:
                return v
        return None

    def emit(typ: str, s: dict[str, Any], f: str, value: object, zxid: int | None = None) -> None:
        nonlocal t
        t += rng.randint(1, 1000)
        ops.append(
            Op(
                len(ops),
                t,
                typ,
                s["proc"],
                f,
                value,
                None if typ == INVOKE else f"n{s['server'] + 1}",
                None,
                zxid,
                session=None if typ == INVOKE else s["session"],
            )
        )

    while started < n_ops or any(s["op"] is not None for s in slots):
        if rng.random() < 0.3:  # a server applies one more entry
            r = rng.randrange(replicas)
            applied[r] = min(len(log), applied[r] + 1)
            continue
        s = slots[rng.randrange(processes)]
        op = s["op"]
        if op is None:
            if started >= n_ops:
                continue
            if rng.random() < roam_rate:
                choices = [r for r in range(replicas) if applied[r] >= s["seen"]]
                s["server"] = rng.choice(choices)
            started += 1
            key = rng.randrange(keys)
            x = rng.random()
            if x < 0.5:
                f, arg = "read", None
            elif x < 0.8 or counter == 0:
                counter += 1
                f, arg = "write", counter
            else:
                counter += 1
                f, arg = "cas", [rng.randint(max(1, counter - 4), counter - 1), counter]
            s["op"] = [f, key, arg, 0, None]
            emit(INVOKE, s, f, [key, arg])
        elif op[3] == 0:  # the op takes effect
            f, key, arg = op[0], op[1], op[2]
            r = s["server"]
            crash = crash_rate and rng.random() < crash_rate
            if crash and rng.random() < 0.5:
                op[3], op[4] = 1, ("crash", None, None)
                continue
            if f == "read":
                if sync_reads:
                    applied[r] = len(log)
                op[4] = (OK, [key, state(r, key)], applied[r])
            else:
                new = arg if f == "write" else arg[1]
                leader = max(range(replicas), key=lambda i: applied[i])
                applied[leader] = len(log)
                if f == "cas" and state(leader, key) != arg[0]:
                    op[4] = (FAIL, [key, arg], applied[r])
                else:
                    log.append((key, new))
                    applied[r] = len(log)
                    op[4] = (OK, [key, arg], len(log))
            if crash:
                op[4] = ("crash", None, None)
            op[3] = 1
        else:
            typ, out, zxid = op[4]
            if typ == "crash":
                emit(INFO, s, op[0], [op[1], op[2]])
                s.update(proc=next_proc, session=f"s{next_proc}", seen=0)
                next_proc += 1
            else:
                s["seen"] = max(s["seen"], zxid)
                emit(typ, s, op[0], out, zxid)
            s["op"] = None
    return ops
