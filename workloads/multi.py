"""The multi workload: list-append transactions built from ZooKeeper's multi.

Guarantee checked: ZooKeeper's multi (``multi``/``transaction``, 3.4+) is
atomic -- "all operations succeed or none of them are applied" (Programmer's
Guide, "Multi-operations"; *Atomicity* and linearizable writes in
"Consistency Guarantees", quoted in shared reference zookeeper.md §2). A
transaction whose every read is pinned by a version check therefore commits
at one point of the leader's zxid order, between its invocation and its
completion: the history must be **strictly serializable**.

Each key ``k<n>`` is a list of unique integers stored as JSON in the znode
``/squall/multi/k<n>``. An op is ``{"f": "txn", "value": [micro-ops]}`` with
2-4 micro-ops ``["r", key, None]`` / ``["append", key, v]`` over distinct
keys. The client reads every key it touches (getData with its Stat; a
missing key is created empty first, outside the transaction), computes the
reads' values and the new lists, and commits one multi of 2-5 ops: for each
key ``setData(new list, version)`` if it appends, else ``check(version)``.
ok: the micro-ops with the reads filled in. A BadVersion (another writer got
there first) is ``fail``: the multi is atomic, so nothing was applied.

``{"f": "doomed-txn"}`` ops are built to fail on their *last* op: the same
version-checked setData's followed by ``create`` of ``/squall/multi/sentinel``,
which exists. They must fail, and none of their appends may ever be seen.

Keys rotate: after ``appends_per_key`` appends a key is retired for a fresh
one, so lists stay short. The final op reads every key used, in one multi.

Checks (``check_multi``): ``doomed-committed`` (a doomed multi came back
ok) and the Elle-style list-append analysis (``checkers.elle``, strict
serializability: G0, G1a -- a failed multi's effect visible --, G1b, G1c,
G-single, G-nonadjacent, G2, lost-update, with process and real-time edges).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Iterator

from kazoo.exceptions import NoNodeError, NodeExistsError

from checkers import elle
from checkers.history import OK, Op
from checkers.result import Result, merge, run_checker
from workloads import _zk

BASE = "/squall/multi"
SENTINEL = f"{BASE}/sentinel"
TXN_FS = ("txn", "doomed-txn")


def _path(key: str) -> str:
    return f"{BASE}/{key}"


def _decode(data: bytes, key: str) -> list:
    if not data:
        return []
    try:
        value = json.loads(data.decode())
    except ValueError as exc:
        raise _zk.Definite(f"bad-data: {key} holds {data[:40]!r}, not a JSON list") from exc
    if not isinstance(value, list):
        raise _zk.Definite(f"bad-data: {key} holds {value!r}, not a JSON list")
    return value


class MultiClient(_zk.ZkClient):
    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        if f not in TXN_FS or not _valid_mops(value):
            return {"type": "fail", "value": value, "zxid": None,
                    "error": f"bad multi op {op!r}: f must be txn or doomed-txn with a list of "
                             "[\"r\", key, null] / [\"append\", key, int] micro-ops"}
        return _zk.run(self.conn, lambda: self._txn(value, doomed=f == "doomed-txn"), fail_value=value)

    def _read(self, key: str) -> tuple[list, int]:
        zk = self.conn.zk
        try:
            data, stat = self.conn.wait(zk.get_async(_path(key)))
        except NoNodeError:
            try:  # a fresh key starts empty; creating it appends nothing
                self.conn.wait(zk.create_async(_path(key), b""))
            except NodeExistsError:
                pass
            data, stat = self.conn.wait(zk.get_async(_path(key)))
        return _decode(data, key), stat.version

    def _txn(self, mops: list, doomed: bool) -> list:
        keys = list(dict.fromkeys(m[1] for m in mops))
        current = {k: self._read(k) for k in keys}
        lists = {k: list(v[0]) for k, v in current.items()}
        done = []
        for f, k, v in mops:
            if f == "r":
                done.append(["r", k, list(lists[k])])
            else:
                lists[k].append(v)
                done.append(["append", k, v])
        t = self.conn.zk.transaction()
        for k in keys:
            version = current[k][1]
            if any(m[0] == "append" and m[1] == k for m in mops):
                t.set_data(_path(k), json.dumps(lists[k], separators=(",", ":")).encode(), version)
            else:
                t.check(_path(k), version)
        if doomed:
            t.create(SENTINEL, b"")
        results = self.conn.wait(t.commit_async())
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise _zk.Definite("multi-rejected: " + ",".join(_zk.error_name(r) for r in results
                                                              if isinstance(r, Exception)))
        return done


def _valid_mops(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, list) and len(m) == 3 and isinstance(m[1], str)
        and ((m[0] == "r" and m[2] is None) or (m[0] == "append" and isinstance(m[2], int)))
        for m in value)


@dataclass
class MultiWorkload:
    name: str = "multi"
    keys: int = 4               # live keys at a time
    appends_per_key: int = 60   # then the key is retired for a fresh one
    doomed_fraction: float = 0.1
    final_each_thread: bool = False
    converge_paths: tuple[str, ...] = (BASE,)  # every node must hold the same copy at the end

    def __post_init__(self) -> None:
        self._final_keys: list[str] = []

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            zk.ensure_path(BASE)
            if zk.exists(SENTINEL) is None:
                zk.create(SENTINEL, b"")

        _zk.with_setup_connection(hosts, create)

    def client(self) -> MultiClient:
        return MultiClient()

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
    return merge([run_checker("multi-atomic", _doomed_never_commit, history),
                  run_checker(elle.NAME, elle.check, history, fs=TXN_FS)], checker="multi")


def _doomed_never_commit(history: list[Op]) -> Result:
    name = "multi-atomic"
    doomed = [op for op in history if op.f == "doomed-txn" and op.type != "invoke"]
    committed = [op for op in doomed if op.type == OK]
    if committed:
        return Result.illegal(name, f"{len(committed)} doomed multi(s) committed",
                              "A multi whose last op creates an existing znode must fail as a "
                              f"whole; these came back ok: {[op.index for op in committed[:10]]}",
                              {"committed": [op.to_dict() for op in committed[:10]]})
    failed = [op for op in doomed if op.type == "fail"]
    if not failed:
        return Result.unknown(name, "no doomed multi completed, so atomicity on failure was not tested")
    return Result.ok(name, f"{len(failed)} doomed multi(s) failed as a whole",
                     {"failed": [op.index for op in failed[:50]]},
                     details={"failed": len(failed), "indeterminate": len(doomed) - len(failed)})


def make(options: dict[str, Any] | None = None) -> MultiWorkload:
    return MultiWorkload()
