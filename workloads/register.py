"""The register workload: per-key registers (the ``register`` interface).

Ops (plain dicts; values are ``[key, ...]`` so a history splits by key):

- ``{"f": "read", "value": [k, None]}`` -> ok ``[k, v]`` (v None = never written);
  a local read, or a fresh one with ``reads="sync"``.
- ``{"f": "write", "value": [k, v]}``.
- ``{"f": "cas", "value": [k, [old, new]]}``: set to new iff the key holds
  old; ``fail`` when it does not.

Every value the op sources write to a key is unique (each client slot
counts in its own residue class, see ``ops``), which is what lets a
database's client implement a sound cas (ZooKeeper's: a version-conditioned
setData, ``harness/dbs/zk/register.py``).

Checks: writes and cas linearizable per key (cas-register model), and every
op, reads included, sequentially consistent in ZooKeeper's sense (a total
order respecting real time among writes and each process's own order); each
session's zxids never go back and it reads its own writes
(``checkers.session_order``); with ``reads="sync"``, every read sees every
write acknowledged before it was invoked (``checkers.fresh_reads``); with
``reads="linearizable"`` (etcd's default), reads are in the linearizability
check too, and fresh as with sync.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from checkers.result import merge, run_checker
from workloads.checks import fresh_after_sync, linearizable_per_key, sequential_registers, session_order


@dataclass
class RegisterWorkload:
    """``keys`` registers live at once; they get about ``ops_per_key`` ops in
    all, then fresh keys replace them (short per-key histories keep the
    linearizability search cheap)."""

    name: str = "register"
    interface: str = "register"
    reads: str = "local"
    keys: int = 3
    ops_per_key: int = 120
    read_fraction: float = 0.5
    cas_fraction: float = 0.25
    budget_s: float = 60.0
    final_each_thread: bool = False
    # Progress (checkers.availability): reads and writes answered; a cas the
    # server refused (BadVersion, a confirmed mismatch) is an answer.
    progress_kinds = {"read": "read", "write": "write", "cas": "write"}
    progress_answered: tuple[str, ...] = ("BadVersion", "cas-mismatch")

    def client_settings(self) -> dict[str, Any]:
        return {"reads": self.reads}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        """Slot ``thread``'s ops. Keys come in windows of ``keys`` fresh keys;
        in each window the slot gives every key ``ceil(ops_per_key / threads)``
        ops in a random order, so slots that keep pace share their keys (ops
        on a key are concurrent) and no key gets more than ``ops_per_key +
        threads - 1`` ops in all. Written values are ``counter * threads +
        thread``: unique per key across every slot (see the module doc)."""
        per_key = max(1, -(-self.ops_per_key // threads))
        written: dict[int, list[int]] = {}
        counter = 0
        window = 0
        while True:
            keys = [window * self.keys + i for i in range(self.keys)]
            order = [k for k in keys for _ in range(per_key)]
            rng.shuffle(order)
            for k in order:
                mine = written.setdefault(k, [])
                r = rng.random()
                if r < self.read_fraction:
                    yield {"f": "read", "value": [k, None]}
                    continue
                counter += 1
                value = counter * threads + thread
                if r < self.read_fraction + self.cas_fraction and mine:
                    yield {"f": "cas", "value": [k, [rng.choice(mine[-3:]), value]]}
                else:
                    yield {"f": "write", "value": [k, value]}
                mine.append(value)
            for k in keys:
                written.pop(k, None)
            window += 1

    def final_ops(self) -> list[dict[str, Any]]:
        return []

    def check(self, history: list[Op]) -> Any:
        results = [
            run_checker(
                "register-linearizable",
                linearizable_per_key,
                history,
                budget_s=self.budget_s,
                reads=self.reads == "linearizable",
            ),
            run_checker("register-sequential", sequential_registers, history, budget_s=self.budget_s),
            run_checker("session-order", session_order, history),
        ]
        if self.reads in ("sync", "linearizable"):
            results.append(run_checker("fresh-after-sync", fresh_after_sync, history))
        return merge(results, checker="register")


def make(options: dict[str, Any] | None = None) -> RegisterWorkload:
    options = dict(options or {})
    reads = options.get("reads", "local") or "local"
    if reads not in ("local", "sync", "linearizable"):
        raise ValueError(f"register reads must be 'local', 'sync' or 'linearizable', got {reads!r}")
    w = RegisterWorkload(reads=reads)
    for name in ("keys", "ops_per_key", "budget_s"):
        if name in options:
            setattr(w, name, type(getattr(w, name))(options[name]))
    return w
