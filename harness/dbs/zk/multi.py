"""The multi interface on a ZooKeeper-protocol database: list-append
transactions built from ZooKeeper's multi (workloads/multi.py: op source and
the Elle-style checks).

Each key ``k<n>`` is a list of unique integers stored as JSON in the znode
``/squall/multi/k<n>``. For a txn the client reads every key it touches
(getData with its Stat; a missing key is created empty first, outside the
transaction), computes the reads' values and the new lists, and commits one
multi: for each key ``setData(new list, version)`` if it appends, else
``check(version)``. ok: the micro-ops with the reads filled in. A BadVersion
(another writer got there first) is ``fail``: the multi is atomic, so
nothing was applied. A doomed-txn adds ``create`` of
``/squall/multi/sentinel``, which exists, as its last op.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError

from harness.dbs.zk import conn as _zk

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
        f, value = op.get("f"), op.get("value")  # type: tuple[Any, Any]
        if f not in TXN_FS or not _valid_mops(value):
            return {
                "type": "fail",
                "value": value,
                "zxid": None,
                "error": f"bad multi op {op!r}: f must be txn or doomed-txn with a list of "
                '["r", key, null] / ["append", key, int] micro-ops',
            }
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
            raise _zk.Definite(
                "multi-rejected: " + ",".join(_zk.error_name(r) for r in results if isinstance(r, Exception))
            )
        return done


def _valid_mops(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, list)
            and len(m) == 3
            and isinstance(m[1], str)
            and ((m[0] == "r" and m[2] is None) or (m[0] == "append" and isinstance(m[2], int)))
            for m in value
        )
    )


class MultiClients:
    converge_paths: tuple[str, ...] = (BASE,)  # every node must hold the same copy at the end

    def __init__(self, settings: Mapping[str, Any]) -> None:
        pass

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            zk.ensure_path(BASE)
            if zk.exists(SENTINEL) is None:
                zk.create(SENTINEL, b"")

        _zk.with_setup_connection(hosts, create)

    def client(self) -> MultiClient:
        return MultiClient()
