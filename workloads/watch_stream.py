"""The watch-stream workload: revision-ordered watch streams, as etcd's
watch offers them (the ``watch-stream`` interface; etcd:
``harness/dbs/etcd_clients.py``'s ``EtcdWatchClient``).

Every client keeps one watch stream on the workload's key prefix, opened from
a start revision a few revisions back (so it replays history first) and
resumed from the revision after the last event it saw whenever it breaks (a
killed or paused member, a member that lost its leader). Clients write to
four keys meanwhile; values are unique (each client slot counts in its own
residue class), so a (key, value) names one write.

Ops:

- ``{"f": "write", "value": [key, n]}`` -> ok ``[key, n, revision]``;
- ``{"f": "watch", "value": back}`` -> ok with the events the stream
  delivered since the client's previous watch op (the first one opens the
  stream ``back`` revisions before the current one);
- ``{"f": "final-watch", "value": null}`` (each client, after healing):
  write a fence key and wait until the stream delivered its event, so every
  write acknowledged before it must have been delivered too.

Checker: ``checkers.etcd_watch`` -- ordered, unique, no gap from the start
revision across resumes, every watcher agreeing on every revision, and
revisions following real time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkers.etcd_watch import check as check_watch_stream
from checkers.history import Op

KEYS = ("k0", "k1", "k2", "k3")


@dataclass
class WatchStreamWorkload:
    name: str = "watch-stream"
    interface: str = "watch-stream"
    write_fraction: float = 0.6
    max_back: int = 30
    final_each_thread: bool = True
    # Progress (checkers.availability): writes acknowledged, and the fence of
    # the final watch confirmed after healing. A watch op only drains what
    # the stream already delivered, so it is no evidence of progress.
    progress_kinds = {"write": "write", "final-watch": "read"}
    progress_answered: tuple[str, ...] = ()

    def client_settings(self) -> dict[str, Any]:
        return {}

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        n = thread  # this slot's values: thread + k * threads (unique across slots)
        yield {"f": "watch", "value": rng.randint(0, self.max_back)}  # open the stream first
        while True:
            if rng.random() < self.write_fraction:
                n += threads
                yield {"f": "write", "value": [rng.choice(KEYS), n]}
            else:
                yield {"f": "watch", "value": rng.randint(0, self.max_back)}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-watch", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_watch_stream(history)


def make(options: dict[str, Any] | None = None) -> WatchStreamWorkload:
    return WatchStreamWorkload()
