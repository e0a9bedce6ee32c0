"""The counter workload: one shared counter incremented by every client.

Guarantee checked: the Counter is a read followed by a version-conditioned
setData, retried on BadVersion; ZooKeeper's conditional setData succeeds
only at the expected version (Programmer's Guide, "ZooKeeper Stat
Structure" and "Consistency Guarantees": linearizable writes, *Single System
Image*). So every applied increment is applied exactly once, the final value
lies between the acknowledged increments and those plus the indeterminate
ones, and one session's reads never go backwards.

Ops (the ``counter`` interface; ZooKeeper: kazoo's ``Counter`` recipe,
retrying BadVersion only, ``harness/dbs/zk/counter.py``):

- ``{"f": "add", "value": d}`` (d in 1..3): ``counter += d`` -> ok ``d``,
  applied at most once (a lost connection ends the op ``info``);
- ``{"f": "read"}``: the counter's value (a local read) -> ok ``[value, session id]``;
- ``{"f": "final-read"}`` after healing: a fresh read.

Checker: ``checkers.recipes.check_counter``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from checkers.recipes import check_counter


@dataclass
class CounterWorkload:
    name: str = "counter"
    interface: str = "counter"
    read_fraction: float = 0.3
    final_each_thread: bool = False

    def client_settings(self) -> dict[str, Any]:
        return {}

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
