"""The queue interface on a ZooKeeper-protocol database: kazoo's ``Queue``
(``queue``, at ``/squall/queue/q``) and ``LockingQueue`` (``locking-queue``,
at ``/squall/queue/lq``) recipes (workloads/queue.py: op source, checks).

- put ``[q, n]`` -> ok ``[q, n, path, czxid]``: the recipe's sequential
  create, done here with ``include_data`` so that the name the server chose
  and its creation zxid are kept (kazoo's ``put`` discards them) for the
  sequential-name check;
- get ``[q, None]`` -> ok ``[q, n]``, or ``[q, None]`` when the queue was
  empty (``LockingQueue``: ``get(timeout)`` then ``consume()``; a consume that
  lost its lock is ``fail`` and the item is released);
- final-read: ``sync``, then every item still in each queue, without
  consuming -> ok ``{q: [n, ...]}``.

kazoo's recipes call blocking APIs without timeouts, so every op runs under
``conn.run_bounded``. ``Queue.get`` retries through ``client.retry``, which by
default retries a lost connection too: a delete whose reply was lost is then
retried, finds the item gone and consumes the *next* one, and the first item
is consumed by nobody (seen in a ZooKeeper campaign under pause). The
client's retry policy therefore retries the recipe's ForceRetryError only
(``conn.refusal_only_retry``), so such a get ends ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import NoNodeError
from kazoo.recipe.queue import LockingQueue, Queue

from harness.dbs.zk import conn as _zk

BASE = "/squall/queue"
QUEUES = {"queue": f"{BASE}/q", "locking-queue": f"{BASE}/lq"}
PRIORITY = 100  # the recipes' default priority: every put uses it
# where each recipe keeps its items
ITEMS = {"queue": f"{BASE}/q", "locking-queue": f"{BASE}/lq/entries"}


class QueueClient(_zk.ZkClient):
    def __init__(self, get_timeout_s: float = 0.5) -> None:
        super().__init__()
        self.get_timeout_s = get_timeout_s

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")  # type: tuple[Any, Any]
        limit = self.get_timeout_s + 3 * self.conn.timeout_s
        if f == "final-read":
            return _zk.run_bounded(self.conn, self._final_read, limit)
        q = value[0] if isinstance(value, list) and len(value) == 2 else None
        if f == "put" and q in QUEUES and isinstance(value[1], int):
            return _zk.run_bounded(self.conn, lambda: self._put(q, value[1]), limit, fail_value=value)
        if f == "get" and q in QUEUES:
            return _zk.run_bounded(self.conn, lambda: self._get(q), limit, fail_value=value)
        return {
            "type": "fail",
            "value": value,
            "zxid": None,
            "error": f"bad queue op {op!r}: f must be put [q, int], get [q, null] or final-read; "
            f"q one of {sorted(QUEUES)}",
        }

    def _recipe(self, q: str) -> Any:
        self.conn.zk.retry = _zk.refusal_only_retry()
        cls = Queue if q == "queue" else LockingQueue
        return cls(self.conn.zk, QUEUES[q])

    def _put(self, q: str, n: int) -> list:
        # The recipe's own put, named as it names its entries (``Queue``: ``<path>/entry-100-``;
        # ``LockingQueue``: ``<path>/entries/entry-100-``, priority 100), so its get finds them.
        recipe = self._recipe(q)
        if q == "queue":
            prefix = f"{recipe.path}/{recipe.prefix}{PRIORITY:03d}-"
        else:
            prefix = f"{recipe.path}{recipe.entries}/{recipe.entry}-{PRIORITY:03d}-"
        path, stat = self.conn.zk.create(prefix, str(n).encode(), sequence=True, include_data=True)
        return [q, n, path, stat.czxid]

    def _get(self, q: str) -> list:
        recipe = self._recipe(q)
        if q == "queue":
            data = recipe.get()
        else:
            data = recipe.get(timeout=self.get_timeout_s)
            if data is not None and not recipe.consume():
                recipe.release()
                raise _zk.Definite("lock-lost: the entry's lock was gone before consume")
        return [q, None if data is None else int(data.decode())]

    def _final_read(self) -> dict[str, list[int]]:
        zk, out = self.conn.zk, {}
        self.conn.wait(zk.sync_async(BASE))
        for q, path in ITEMS.items():
            try:
                names = self.conn.wait(zk.get_children_async(path))
            except NoNodeError:
                names = []
            items = []
            for name in sorted(names):
                try:
                    data, _ = self.conn.wait(zk.get_async(f"{path}/{name}"))
                except NoNodeError:
                    continue
                items.append(int(data.decode()))
            out[q] = items
        return out


class QueueClients:
    """Settings: ``get_timeout_s`` (the locking queue's wait for an item, default 0.5)."""

    converge_paths: tuple[str, ...] = (BASE,)  # every node must hold the same copy at the end

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.get_timeout_s = float(settings.get("get_timeout_s", 0.5))

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            for path in (*QUEUES.values(), f"{BASE}/lq/entries", f"{BASE}/lq/taken"):
                zk.ensure_path(path)

        _zk.with_setup_connection(hosts, create)

    def client(self) -> QueueClient:
        return QueueClient(self.get_timeout_s)
