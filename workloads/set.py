"""The set workload: unique adds, a final read after healing (the ``set``
interface; ZooKeeper: one znode per element, ``harness/dbs/zk/set.py``).

- ``{"f": "add", "value": n}``: add n (n unique). A failed add that is
  present counts as unexpected only if no attempt could have created it.
- ``{"f": "read"}`` -> ok sorted list of every element.
- ``{"f": "final-read"}``: a fresh read (ZooKeeper: ``sync`` first), after healing.

The final read runs after the nemesis healed everything. The set-full check
(``workloads.checks.check_set``): every acknowledged add is in the final
read (else *lost*), nothing is there that was never attempted (*unexpected*);
indeterminate adds may be present (*recovered*) or not. Reads during the run
that miss an add acknowledged before they were invoked are counted as
*stale* (allowed: ZooKeeper reads are local), except a process missing its
own acknowledged add, which breaks ZooKeeper's per-client order (invalid).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from workloads.checks import check_set


@dataclass
class SetWorkload:
    name: str = "set"
    interface: str = "set"
    read_fraction: float = 0.05
    final_each_thread: bool = False
    # Progress (checkers.availability): adds and reads acknowledged, and the
    # final read completes after healing.
    progress_kinds = {"add": "write", "read": "read", "final-read": "read"}
    progress_answered: tuple[str, ...] = ()

    def client_settings(self) -> dict[str, Any]:
        return {}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        n = thread  # this slot's adds: thread, thread + threads, ... (unique across slots)
        while True:
            if rng.random() < self.read_fraction:
                yield {"f": "read", "value": None}
            else:
                yield {"f": "add", "value": n}
                n += threads

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-read", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_set(history)


def make(options: dict[str, Any] | None = None) -> SetWorkload:
    return SetWorkload()
