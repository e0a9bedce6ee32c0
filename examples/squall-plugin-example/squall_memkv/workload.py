"""memkv-counter: every client increments one counter; the final read must
equal the acknowledged increments plus at most the indeterminate ones, and
every read must lie between what was acknowledged before it began and what
was attempted before it ended (an example workload plugin, on memkv's own
``memkv-incr`` interface)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import INVOKE, OK, Op
from checkers.result import Result

NAME = "memkv-counter"


def check(history: list[Op]) -> Result:
    """Each ok read lies in [acknowledged incrs completed before its invoke,
    incrs invoked before its completion]; an anomaly names the read."""
    acked = attempted = 0
    invoked_at: dict[Any, int] = {}
    reads = []
    for op in history:
        if op.f == "incr":
            if op.type == INVOKE:
                attempted += 1
            elif op.type == OK:
                acked += 1
            elif op.type == "fail":
                attempted -= 1  # refused: never applied
        elif op.f == "read":
            if op.type == INVOKE:
                invoked_at[op.process] = acked
            elif op.type == OK:
                reads.append((op, invoked_at.get(op.process, 0), attempted))
    if not reads:
        return Result.unknown(NAME, "no read completed: nothing to judge")
    bad = [(op, low, high) for op, low, high in reads if not low <= int(op.value or 0) <= high]
    if bad:
        op, low, high = bad[0]
        return Result.illegal(
            NAME,
            f"{len(bad)} read(s) out of bounds",
            f"read at index {op.index} saw {op.value}, outside [{low}, {high}]: "
            "an acknowledged increment was lost or one never attempted appeared",
            {"reads": [[o.index, o.value, lo, hi] for o, lo, hi in bad[:20]]},
        )
    return Result.ok(NAME, f"{len(reads)} read(s) within bounds", {"reads": len(reads), "acked": acked})


@dataclass
class CounterWorkload:
    name: str = NAME
    interface: str = "memkv-incr"
    final_each_thread: bool = False
    read_fraction: float = 0.2

    def client_settings(self) -> dict[str, Any]:
        return {}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        while True:
            yield {"f": "read" if rng.random() < self.read_fraction else "incr", "value": None}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "read", "value": None}]

    def check(self, history: list[Op]) -> Result:
        return check(history)


def make(options: dict[str, Any] | None = None) -> CounterWorkload:
    """memkv-counter: increments and bounded reads of one memkv counter."""
    return CounterWorkload()
