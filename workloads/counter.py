"""The counter workload: kazoo's ``Counter`` recipe.

Guarantee checked: the Counter is a read followed by a version-conditioned
setData, retried on BadVersion; ZooKeeper's conditional setData succeeds
only at the expected version (Programmer's Guide, "ZooKeeper Stat
Structure" and "Consistency Guarantees": linearizable writes, *Single System
Image*). So every applied increment is applied exactly once, the final value
lies between the acknowledged increments and those plus the indeterminate
ones, and one session's reads never go backwards.

Ops on ``/squall/counter/c``:

- ``{"f": "add", "value": d}`` (d in 1..3): ``counter += d`` -> ok ``d``;
- ``{"f": "read"}``: the counter's value (a local read) -> ok ``[value, session id]``;
- ``{"f": "final-read"}`` after healing: ``sync`` then the same read.

kazoo's Counter retries through ``client.retry``, which by default also
retries a lost connection -- and a lost reply of an applied setData would
then be applied twice, hiding which increments happened. Here the retry
policy retries BadVersion only (``_zk.refusal_only_retry``, up to
``BAD_VERSION_TRIES`` times), so a lost
connection ends the op as ``info`` (applied at most once) and running out of
tries is a ``fail`` (every attempt was refused). Checker:
``checkers.recipes.check_counter``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator

from kazoo.recipe.counter import Counter
from kazoo.retry import RetryFailedError

from checkers.history import Op
from checkers.recipes import check_counter
from workloads import _zk

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
        return {"type": "fail", "value": value, "zxid": None,
                "error": f"bad counter op {op!r}: f must be add (positive int), read or final-read"}

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


@dataclass
class CounterWorkload:
    name: str = "counter"
    read_fraction: float = 0.3
    final_each_thread: bool = False
    converge_paths: tuple[str, ...] = ("/squall/counter",)  # every node must hold the same copy at the end

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            if zk.exists(PATH) is None:
                zk.create(PATH, b"0", makepath=True)

        _zk.with_setup_connection(hosts, create)

    def client(self) -> CounterClient:
        return CounterClient()

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        while True:
            if rng.random() < self.read_fraction:
                yield {"f": "read", "value": None}
            else:
                yield {"f": "add", "value": rng.randint(1, 3)}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-read", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_counter(history)


def make(options: dict[str, Any] | None = None) -> CounterWorkload:
    return CounterWorkload()
