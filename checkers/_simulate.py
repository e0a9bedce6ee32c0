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

from checkers.history import FAIL, INFO, INVOKE, OK, Op


def register_history(n_ops: int, keys: int = 10, processes: int = 20, seed: int = 0,
                     crash_rate: float = 0.0, values: int = 5) -> list[Op]:
    rng = random.Random(seed)
    state = {k: None for k in range(keys)}
    ops: list[Op] = []
    # per client slot: None (idle) or [process, f, key, value, phase, result]
    slots: list[list | None] = [None] * processes
    proc_ids = list(range(processes))
    next_proc = processes
    started = 0
    t = 0

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
                s[4], s[5] = 1, ("crash", None)      # never takes effect
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
                proc_ids[i] = next_proc     # a crashed client is replaced
                next_proc += 1
            else:
                emit(typ, proc, f, key, out)
            slots[i] = None
    return ops
