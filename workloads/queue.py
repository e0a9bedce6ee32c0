"""The queue workload: two FIFO queues (plain and locking) of unique items.

Guarantee checked: the recipes are built on ZooKeeper's sequential znodes
and atomic deletes (Programmer's Guide, "Sequence Nodes"; the "Queues"
recipe in "ZooKeeper Recipes and Solutions"; *Reliability* in "Consistency
Guarantees": an acknowledged update persists). So no acknowledged put is
lost -- each is consumed by one get or still in the queue at the end -- and
no item is consumed twice (a delete of one znode succeeds once). The
sequential names themselves are checked too: never handed out twice, growing
with their creation zxid, never refused NodeExists ("Sequence Nodes": a
monotonically increasing counter unique to the parent).

Ops (the ``queue`` interface; ``q`` is ``queue`` -- a plain queue -- or
``locking-queue``; ZooKeeper: kazoo's ``Queue`` and ``LockingQueue``
recipes, ``harness/dbs/zk/queue.py``):

- ``{"f": "put", "value": [q, n]}`` (n unique) -> ok ``[q, n, path, czxid]``,
  the sequential znode the put created and its creation zxid (``[q, n]``
  from a database without such names);
- ``{"f": "get", "value": [q, None]}`` -> ok ``[q, n]``, or ``[q, None]``
  when the queue was empty;
- ``{"f": "final-read"}`` after healing: every item still in each queue,
  fresh, without consuming -> ok ``{q: [n, ...]}``.

Checker: ``checkers.recipes.check_queue``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from checkers.recipes import check_queue

QUEUES = ("queue", "locking-queue")


@dataclass
class QueueWorkload:
    name: str = "queue"
    interface: str = "queue"
    put_fraction: float = 0.55
    final_each_thread: bool = False

    def client_settings(self) -> dict[str, Any]:
        return {}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        n = thread  # this slot's items: thread + k * threads (unique across slots)
        while True:
            q = rng.choice(sorted(QUEUES))
            if rng.random() < self.put_fraction:
                n += threads
                yield {"f": "put", "value": [q, n]}
            else:
                yield {"f": "get", "value": [q, None]}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-read", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_queue(history)


def make(options: dict[str, Any] | None = None) -> QueueWorkload:
    return QueueWorkload()
