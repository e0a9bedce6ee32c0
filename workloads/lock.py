"""The lock workload: a mutex guarding a counter resource (the ``lock``
interface; ZooKeeper: kazoo's Lock recipe, ``harness/dbs/zk/lock.py``).

One op = acquire the lock, read the resource's counter n, write n+1, release:

- ``{"f": "fenced-write"}``: the write commits only while this client still
  holds the lock (ZooKeeper: ``multi([check(my lock node), setData(...)])``;
  a holder whose session expired during a pause loses its ephemeral lock
  node, and its late write is rejected). Fenced writes must never overlap
  (two writes read the same n: a lost update) or go backwards (zxid order of
  the writes must read the counter the previous write wrote).
- ``{"f": "unfenced-write"}``: the same, with a plain write on another
  counter. Locks are not safe without fencing: a paused holder can wake up
  after its session expired and write while another client holds the lock.
  Such overlaps are *findings* reported with the verdict, not failures.

ok values: ``{"read": n, "wrote": n+1, "lock": "<lock node name>"}``; the
op's zxid is the write's (the reply header's zxid). A lock that cannot be
acquired in time is a ``fail`` (nothing written); a fenced write rejected by
its check is a ``fail`` with error ``fence-rejected``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from workloads.checks import check_lock


@dataclass
class LockWorkload:
    name: str = "lock"
    interface: str = "lock"
    fenced_fraction: float = 0.5
    acquire_timeout_s: float = 2.0
    final_each_thread: bool = False
    # Progress (checkers.availability): a lock acquired and the write made. A
    # fenced write the server rejected (the holder's session ended) is an
    # answer; a lock not acquired in time (lock-timeout) is not.
    progress_kinds = {"fenced-write": "write", "unfenced-write": "write"}
    progress_answered: tuple[str, ...] = ("fence-rejected",)

    def client_settings(self) -> dict[str, Any]:
        return {"acquire_timeout_s": self.acquire_timeout_s}

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
