"""The election workload: leader election with fenced leader writes (the
``election`` interface; ZooKeeper: kazoo's ``Election`` recipe,
``harness/dbs/zk/election.py``).

Guarantees checked: the recipe is ZooKeeper's "Leader Election" recipe
(ephemeral sequential contenders, the lowest leads; "ZooKeeper Recipes and
Solutions"), resting on ephemeral nodes being deleted when their session
ends (Programmer's Guide, "Ephemeral Nodes", "ZooKeeper Sessions") and on
linearizable writes. So:

- at most one leader acts at a time: each leader's write commits only while
  it leads (ZooKeeper: ``multi([check(its contender znode), setData(...)])``);
  the fenced writes must form one chain in zxid order (no two read the same
  n, none goes backwards) -- ``workloads.checks.check_lock``'s chain check;
- after the leaders' sessions end a new leader is elected within a bound:
  the healed final phase runs one more election, which must be won within
  ``3 x`` the session timeout (``checkers.recipes.check_elected``).

Ops: ``{"f": "lead"}`` (main phase) and ``{"f": "final-lead"}`` (after
healing): run for leader, giving up after the bound. ok value ``{"read": n, "wrote": n+1, "lock":
contender node, "write_zxid": zxid}``; not elected in time -> ``fail``
(``not-elected``); the fence rejected -> ``fail`` (``fence-rejected``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from checkers.recipes import check_elected
from checkers.result import merge, run_checker
from workloads.checks import check_lock


@dataclass
class ElectionWorkload:
    name: str = "election"
    interface: str = "election"
    elect_timeout_s: float = 2.0
    final_each_thread: bool = False

    def client_settings(self) -> dict[str, Any]:
        return {"elect_timeout_s": self.elect_timeout_s}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        while True:
            yield {"f": "lead", "value": None}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-lead", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_election(history)


def check_election(history: list[Op]) -> Any:
    """Fencing over every leader write (main and final phase) + liveness."""
    as_fenced = [dataclasses.replace(op, f="fenced-write") if op.f in ("lead", "final-lead") else op for op in history]
    return merge(
        [
            run_checker("election-fencing", check_lock, as_fenced),
            run_checker("election-liveness", check_elected, history),
        ],
        checker="election",
    )


def make(options: dict[str, Any] | None = None) -> ElectionWorkload:
    return ElectionWorkload()
