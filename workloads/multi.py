"""The multi workload: list-append transactions built from ZooKeeper's multi.

Guarantee checked: ZooKeeper's multi (``multi``/``transaction``, 3.4+) is
atomic -- "all operations succeed or none of them are applied" (Programmer's
Guide, "Multi-operations"; *Atomicity* and linearizable writes in
"Consistency Guarantees", quoted in shared reference zookeeper.md §2). A
transaction whose every read is pinned by a version check therefore commits
at one point of the leader's zxid order, between its invocation and its
completion: the history must be **strictly serializable**.

Each key ``k<n>`` is a list of unique integers. An op is ``{"f": "txn",
"value": [micro-ops]}`` with 2-4 micro-ops ``["r", key, None]`` /
``["append", key, v]`` over distinct keys (the ``multi`` interface;
ZooKeeper: JSON lists in znodes, each key read with its version, then one
multi of version-checked setData/check ops, ``harness/dbs/zk/multi.py``).
ok: the micro-ops with the reads filled in. A refusal (another writer got
there first) is ``fail``: the multi is atomic, so nothing was applied.

``{"f": "doomed-txn"}`` ops are built to fail on their *last* step (ZooKeeper:
``create`` of a sentinel znode that exists). They must fail, and none of
their appends may ever be seen.

Keys rotate: after ``appends_per_key`` appends a key is retired for a fresh
one, so lists stay short. The final op reads every key used, in one multi.

Checks (``check_multi``): ``doomed-committed`` (a doomed multi came back
ok) and the Elle-style list-append analysis (``checkers.elle``, strict
serializability: G0, G1a -- a failed multi's effect visible --, G1b, G1c,
G-single, G-nonadjacent, G2, lost-update, with process and real-time edges).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers import elle
from checkers.history import OK, Op
from checkers.result import Result, merge, run_checker

TXN_FS = ("txn", "doomed-txn")


@dataclass
class MultiWorkload:
    name: str = "multi"
    interface: str = "multi"
    keys: int = 4  # live keys at a time
    appends_per_key: int = 60  # then the key is retired for a fresh one
    doomed_fraction: float = 0.1
    final_each_thread: bool = False

    def __post_init__(self) -> None:
        self._final_keys: list[str] = []

    def client_settings(self) -> dict[str, Any]:
        return {}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        # One source per client slot: appended values come from the slot's own
        # residue class (thread + 1 + k * threads, unique across slots); every slot
        # moves through the same key names k0, k1, ..., each after its share of
        # a key's appends, and the final reads cover every key any slot used.
        live = [f"k{i}" for i in range(self.keys)]
        for k in live:
            if k not in self._final_keys:
                self._final_keys.append(k)
        per_slot = max(1, self.appends_per_key // max(1, threads))
        appends = {k: 0 for k in live}
        next_key, counter = self.keys, thread + 1 - threads  # first value: thread + 1
        while True:
            keys = rng.sample(live, rng.randint(2, min(4, len(live))))
            doomed = rng.random() < self.doomed_fraction
            mops: list[list[Any]] = []
            for k in keys:
                shape = rng.choice(("r", "a", "ra", "ar")) if not doomed else "a"
                for c in shape:
                    if c == "r":
                        mops.append(["r", k, None])
                    else:
                        counter += threads
                        appends[k] += 1
                        mops.append(["append", k, counter])
            yield {"f": "doomed-txn" if doomed else "txn", "value": mops}
            for i, k in enumerate(live):
                if appends[k] >= per_slot:
                    live[i] = f"k{next_key}"
                    appends[live[i]] = 0
                    next_key += 1
                    if live[i] not in self._final_keys:
                        self._final_keys.append(live[i])

    def final_ops(self) -> list[dict[str, Any]]:
        # every key the op source used (ops() records them), read in one
        # multi of checks: shows appends no read during the run showed
        keys = self._final_keys or [f"k{i}" for i in range(self.keys)]
        return [{"f": "txn", "value": [["r", k, None] for k in keys]}]

    def check(self, history: list[Op]) -> Any:
        return check_multi(history)


def check_multi(history: list[Op]) -> Result:
    """All-or-nothing for doomed multis, then the list-append analysis."""
    return merge(
        [
            run_checker("multi-atomic", _doomed_never_commit, history),
            run_checker(elle.NAME, elle.check, history, fs=TXN_FS),
        ],
        checker="multi",
    )


def _doomed_never_commit(history: list[Op]) -> Result:
    name = "multi-atomic"
    doomed = [op for op in history if op.f == "doomed-txn" and op.type != "invoke"]
    committed = [op for op in doomed if op.type == OK]
    if committed:
        return Result.illegal(
            name,
            f"{len(committed)} doomed multi(s) committed",
            "A multi whose last op creates an existing znode must fail as a "
            f"whole; these came back ok: {[op.index for op in committed[:10]]}",
            {"committed": [op.to_dict() for op in committed[:10]]},
        )
    failed = [op for op in doomed if op.type == "fail"]
    if not failed:
        return Result.unknown(name, "no doomed multi completed, so atomicity on failure was not tested")
    return Result.ok(
        name,
        f"{len(failed)} doomed multi(s) failed as a whole",
        {"failed": [op.index for op in failed[:50]]},
        details={"failed": len(failed), "indeterminate": len(doomed) - len(failed)},
    )


def make(options: dict[str, Any] | None = None) -> MultiWorkload:
    return MultiWorkload()
