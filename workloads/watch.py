"""The watch workload: one-shot and persistent-recursive watches on keys
other clients change.

Guarantees checked (ZooKeeper Programmer's Guide, "ZooKeeper Watches" and
"Consistency Guarantees", quoted in shared reference zookeeper.md §2): a
watch is one-shot and fires on a change after the data it was set with;
watch events are ordered with respect to replies -- "a client will see a
watch event for a znode it is watching before seeing the new data that
corresponds to that znode"; all clients see changes in one order (the zxid
order; *Single System Image*: a client never sees an older view); and a
persistent-recursive watch (``addWatch``, 3.6+) stays set and is triggered
by every change under its path.

Ops (the ``watch`` interface; keys ``w0``/``w1`` carry one-shot data
watches, ``c0``/``c1`` one-shot child watches, ``p0``/``p1`` the persistent
recursive watch, and no key carries two kinds, so every notification is
attributable):

- ``{"f": "write", "value": [key, n]}`` -> ok ``[key, n-as-str, version]``
  (ZooKeeper's client writes the same data, ``"same"``, to ``w1`` and ``p1``
  every time: an unchanged setData must still make a new version and fire);
  on a child key the write creates or deletes a child of the key instead
  (ZooKeeper: ``NodeChildrenChanged``, both ways) -> ok ``[key, change, null]``.
- ``{"f": "write-burst", "value": [key, [n1, n2, n3]]}`` (``w0``, ``p0``):
  the writes pipelined on one connection, all sent before any reply -> ok
  ``[key, [[n1-as-str, version], ...]]`` in the order sent ("Sequential
  Consistency: updates from a client will be applied in the order that they
  were sent", so the versions grow in that order).
- on ``e0``/``e1`` a write creates the znode or deletes it when it exists;
  ``{"f": "exists-read", "value": [key, None]}`` asks whether it exists under a
  one-shot exists watch ("absent", or its czxid): a watch set in one state
  must fire before a read on that connection shows another.
- ``{"f": "watch-read", "value": [key, None]}``: a read arming a one-shot
  watch (re-armed by every read); on a child key it lists the children, and
  its "version" is the key's child version (cversion).
- ``{"f": "pwatch-read", "value": [key, None]}``: a read under the
  connection's persistent recursive watch.

A read's value says whether the previous watch's event arrived before its
reply (ZooKeeper: the client logs notifications and replies in arrival order
and re-registers watches after a move with setWatches, as the Java client
does; ``harness/dbs/zk/watch.py``; the value fields: ``checkers/watch.py``).

Checker: ``checkers.watch.check_watch``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.history import Op
from checkers.watch import check_watch

ONE_SHOT = ("w0", "w1")
CHILD = ("c0", "c1")
PERSISTENT = ("p0", "p1")
EXISTS = ("e0", "e1")  # znodes that writes create and delete, read by exists-read under an exists watch
KEYS = ONE_SHOT + CHILD + PERSISTENT + EXISTS
WATCHED = ONE_SHOT + CHILD  # the keys watch-read arms a one-shot watch on
BURST_KEYS = ("w0", "p0")  # keys that also take pipelined bursts of writes (unique data)
BURST = 3  # writes per burst
FS = ("write", "write-burst", "watch-read", "pwatch-read", "exists-read")


@dataclass
class WatchWorkload:
    name: str = "watch"
    interface: str = "watch"
    write_fraction: float = 0.4
    burst_fraction: float = 0.5  # of the writes to a BURST_KEYS key
    final_each_thread: bool = True

    def client_settings(self) -> dict[str, Any]:
        return {}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        n = thread  # this slot's values: thread + k * threads (unique across slots)
        while True:
            r = rng.random()
            if r < self.write_fraction:
                key = rng.choice(sorted(KEYS))
                if key in BURST_KEYS and rng.random() < self.burst_fraction:
                    values = [n + threads * (i + 1) for i in range(BURST)]
                    n = values[-1]
                    yield {"f": "write-burst", "value": [key, values]}
                else:
                    n += threads
                    yield {"f": "write", "value": [key, n]}
            elif r < (1 + self.write_fraction) / 2:
                yield {"f": "watch-read", "value": [rng.choice(sorted(WATCHED)), None]}
            elif r < 0.85:
                yield {"f": "pwatch-read", "value": [rng.choice(sorted(PERSISTENT)), None]}
            else:
                yield {"f": "exists-read", "value": [rng.choice(sorted(EXISTS)), None]}

    def final_ops(self) -> list[dict[str, Any]]:
        # every client reads every key once more after healing
        return (
            [{"f": "watch-read", "value": [k, None]} for k in sorted(WATCHED)]
            + [{"f": "pwatch-read", "value": [k, None]} for k in sorted(PERSISTENT)]
            + [{"f": "exists-read", "value": [k, None]} for k in sorted(EXISTS)]
        )

    def check(self, history: list[Op]) -> Any:
        return check_watch(history)


def make(options: dict[str, Any] | None = None) -> WatchWorkload:
    return WatchWorkload()
