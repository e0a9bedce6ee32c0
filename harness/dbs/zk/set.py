"""The set interface on a ZooKeeper-protocol database: unique adds as
distinct znodes ``/squall/set/e-<n>`` (workloads/set.py: op source, checks).

- add n: create ``/squall/set/e-<n>``. NodeExists can only mean an earlier
  attempt of the same add that came back ``info`` -- but every add is issued
  once, so it is reported as ``fail`` with the error named.
- read: getChildren, sorted (a local read).
- final-read: ``sync`` then the same read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import NoNodeError

from harness.dbs.zk import conn as _zk

BASE = "/squall/set"


class SetClient(_zk.ZkClient):
    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        if f == "add" and isinstance(value, int):
            return _zk.run(self.conn, lambda: self._add(value), fail_value=value)
        if f == "read":
            return _zk.run(self.conn, self._read, fail_value=None)
        if f == "final-read":
            return _zk.run(self.conn, lambda: self._read(sync=True), fail_value=None)
        return {
            "type": "fail",
            "value": value,
            "zxid": None,
            "error": f"bad set op {op!r}: f must be add (int value), read or final-read",
        }

    def _add(self, n: int) -> int:
        self.conn.wait(self.conn.zk.create_async(f"{BASE}/e-{n}", b""))
        return n

    def _read(self, sync: bool = False) -> list[int]:
        if sync:  # the final read must not be a lagging follower's view
            self.conn.wait(self.conn.zk.sync_async(BASE))
        try:
            children = self.conn.wait(self.conn.zk.get_children_async(BASE))
        except NoNodeError:
            children = []
        out = []
        for name in children:
            if name.startswith("e-"):
                try:
                    out.append(int(name[2:]))
                except ValueError:
                    out.append(name)  # an unexpected element, kept for the checker
        return sorted(out, key=str) if any(isinstance(x, str) for x in out) else sorted(out)


class SetClients:
    converge_paths: tuple[str, ...] = (BASE,)

    def __init__(self, settings: Mapping[str, Any]) -> None:
        pass

    def setup(self, hosts: str) -> None:
        _zk.with_setup_connection(hosts, lambda zk: zk.ensure_path(BASE))

    def client(self) -> SetClient:
        return SetClient()
