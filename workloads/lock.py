"""The lock workload: kazoo's Lock recipe guarding a counter resource.

One op = acquire the lock, read the resource's counter n, write n+1, release:

- ``{"f": "fenced-write"}``: the write is ``multi([check(my lock node),
  setData(/squall/lock/fenced, n+1)])``: it commits only while this client's
  own lock znode still exists, i.e. while it still holds the lock (a holder
  whose session expired during a pause loses its ephemeral lock node, and its
  late write is rejected). Fenced writes must never overlap (two writes read
  the same n: a lost update) or go backwards (zxid order of the writes
  must read the counter the previous write wrote).
- ``{"f": "unfenced-write"}``: the same, with a plain setData on
  ``/squall/lock/unfenced``. ZooKeeper locks are not safe without fencing: a
  paused holder can wake up after its session expired and write while
  another client holds the lock. Such overlaps are *findings* reported with
  the verdict, not failures.

ok values: ``{"read": n, "wrote": n+1, "lock": "<lock node name>"}``; the
op's zxid is the write's (the reply header's zxid). A lock that cannot be
acquired in time is a ``fail`` (nothing written); a fenced write rejected by
its check is a ``fail`` with error ``fence-rejected``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator

from kazoo.exceptions import LockTimeout
from kazoo.recipe.lock import Lock

from checkers.history import Op
from workloads import _zk
from workloads.checks import check_lock

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
            return {"type": "fail", "value": op.get("value"), "zxid": None,
                    "error": f"bad lock op {op!r}: f must be fenced-write or unfenced-write"}
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


@dataclass
class LockWorkload:
    name: str = "lock"
    fenced_fraction: float = 0.5
    acquire_timeout_s: float = 2.0
    final_each_thread: bool = False
    converge_paths: tuple[str, ...] = (BASE,)
    # Progress (checkers.availability): a lock acquired and the write made. A
    # fenced write the server rejected (the holder's session ended) is an
    # answer; a lock not acquired in time (lock-timeout) is not.
    progress_kinds = {"fenced-write": "write", "unfenced-write": "write"}
    progress_answered: tuple[str, ...] = ("fence-rejected",)

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            zk.ensure_path(LOCK_PATH)
            for path in RESOURCES.values():
                if zk.exists(path) is None:
                    zk.create(path, b"0")

        _zk.with_setup_connection(hosts, create)

    def client(self) -> LockClient:
        return LockClient(self.acquire_timeout_s)

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        while True:
            f = "fenced-write" if rng.random() < self.fenced_fraction else "unfenced-write"
            yield {"f": f, "value": None}

    def final_ops(self) -> list[dict[str, Any]]:
        return []

    def check(self, history: list[Op]) -> Any:
        return check_lock(history)


def make(options: dict[str, Any] | None = None) -> LockWorkload:
    return LockWorkload()
