"""The lock interface on a ZooKeeper-protocol database: kazoo's Lock recipe
guarding counters (workloads/lock.py: op source and checks).

One op = acquire the lock at ``/squall/lock/lock``, read the resource's
counter n, write n+1, release:

- fenced-write: the write is ``multi([check(my lock node), setData(
  /squall/lock/fenced, n+1)])``: it commits only while this client's own lock
  znode still exists, i.e. while it still holds the lock (a holder whose
  session expired during a pause loses its ephemeral lock node, and its late
  write is rejected: ``fail`` with error ``fence-rejected``).
- unfenced-write: a plain setData on ``/squall/lock/unfenced``.

ok values: ``{"read": n, "wrote": n+1, "lock": "<lock node name>",
"write_zxid": zxid}``; the op's zxid is the write's. A lock that cannot be
acquired in time is a ``fail`` (``lock-timeout``, nothing written).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import LockTimeout
from kazoo.recipe.lock import Lock

from harness.dbs.zk import conn as _zk

BASE = "/squall/lock"
LOCK_PATH = f"{BASE}/lock"
RESOURCES = {"fenced-write": f"{BASE}/fenced", "unfenced-write": f"{BASE}/unfenced"}


class LockClient(_zk.ZkClient):
    def __init__(self, acquire_timeout_s: float = 2.0) -> None:
        super().__init__()
        self.acquire_timeout_s = acquire_timeout_s

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f = op.get("f")
        if f not in RESOURCES:
            return {
                "type": "fail",
                "value": op.get("value"),
                "zxid": None,
                "error": f"bad lock op {op!r}: f must be fenced-write or unfenced-write",
            }
        limit = self.acquire_timeout_s + 3 * self.conn.timeout_s
        return _zk.run_bounded(self.conn, lambda: self._locked_write(f), limit, fail_value=None)

    def _locked_write(self, f: str) -> dict[str, Any]:
        zk = self.conn.zk
        lock = Lock(zk, LOCK_PATH)
        try:
            got = lock.acquire(timeout=self.acquire_timeout_s)
        except LockTimeout:
            got = False
        if not got:
            raise _zk.Definite("lock-timeout: the lock was not acquired")
        try:
            resource = RESOURCES[f]
            data, _ = self.conn.wait(zk.get_async(resource))
            n = int(data.decode() or 0)
            if f == "fenced-write":
                t = zk.transaction()
                t.check(f"{LOCK_PATH}/{lock.node}", 0)
                t.set_data(resource, str(n + 1).encode())
                results = self.conn.wait(t.commit_async())
                if any(isinstance(r, Exception) for r in results):
                    raise _zk.Definite(f"fence-rejected: {[_zk.error_name(r) for r in results]}")
            else:
                self.conn.wait(zk.set_async(resource, str(n + 1).encode()))
            zxid = self.conn.last_zxid()
            return {"read": n, "wrote": n + 1, "lock": lock.node, "write_zxid": zxid}
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - a lost session releases it anyway
                pass


class LockClients:
    """Settings: ``acquire_timeout_s`` (default 2)."""

    converge_paths: tuple[str, ...] = (BASE,)

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.acquire_timeout_s = float(settings.get("acquire_timeout_s", 2.0))

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            zk.ensure_path(LOCK_PATH)
            for path in RESOURCES.values():
                if zk.exists(path) is None:
                    zk.create(path, b"0")

        _zk.with_setup_connection(hosts, create)

    def client(self) -> LockClient:
        return LockClient(self.acquire_timeout_s)
