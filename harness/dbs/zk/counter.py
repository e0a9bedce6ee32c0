"""The counter interface on a ZooKeeper-protocol database: kazoo's
``Counter`` recipe on ``/squall/counter/c`` (workloads/counter.py: op source, checks).

- add d: ``counter += d`` -> ok ``d``;
- read: the counter's value (a local read) -> ok ``[value, session id]``;
- final-read: ``sync`` then the same read.

kazoo's Counter retries through ``client.retry``, which by default also
retries a lost connection -- and a lost reply of an applied setData would
then be applied twice, hiding which increments happened. Here the retry
policy retries BadVersion only (``conn.refusal_only_retry``, up to
``BAD_VERSION_TRIES`` times), so a lost connection ends the op as ``info``
(applied at most once) and running out of tries is a ``fail`` (every
attempt was refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.recipe.counter import Counter
from kazoo.retry import RetryFailedError

from harness.dbs.zk import conn as _zk

PATH = "/squall/counter/c"
BAD_VERSION_TRIES = 20


class CounterClient(_zk.ZkClient):
    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        limit = 4 * self.conn.timeout_s
        if f == "add" and isinstance(value, int) and value > 0:
            return _zk.run_bounded(self.conn, lambda: self._add(value), limit, fail_value=value)
        if f in ("read", "final-read"):
            return _zk.run_bounded(self.conn, lambda: self._read(sync=f == "final-read"), limit)
        return {
            "type": "fail",
            "value": value,
            "zxid": None,
            "error": f"bad counter op {op!r}: f must be add (positive int), read or final-read",
        }

    def _counter(self) -> Counter:
        self.conn.zk.retry = _zk.refusal_only_retry(BAD_VERSION_TRIES)
        return Counter(self.conn.zk, PATH)

    def _add(self, d: int) -> int:
        counter = self._counter()
        try:
            counter += d
        except RetryFailedError as exc:
            raise _zk.Definite(f"bad-version: refused {BAD_VERSION_TRIES} times") from exc
        return d

    def _read(self, sync: bool) -> list:
        if sync:
            self.conn.wait(self.conn.zk.sync_async(PATH))
        return [self._counter().value, self.conn.session_id()]


class CounterClients:
    converge_paths: tuple[str, ...] = ("/squall/counter",)  # every node must hold the same copy at the end

    def __init__(self, settings: Mapping[str, Any]) -> None:
        pass

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            if zk.exists(PATH) is None:
                zk.create(PATH, b"0", makepath=True)

        _zk.with_setup_connection(hosts, create)

    def client(self) -> CounterClient:
        return CounterClient()
