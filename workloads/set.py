"""The set workload: unique adds as distinct znodes, a final read after healing.

- ``{"f": "add", "value": n}``: create ``/squall/set/e-<n>`` (n unique).
  NodeExists can only mean an earlier attempt of the same add that came back
  ``info`` -- but every add is issued once, so it is reported as ``fail``
  with the error named (and the checker treats a failed add that is present
  as unexpected only if no attempt could have created it).
- ``{"f": "read"}`` -> ok sorted list of every element (getChildren).
- ``{"f": "final-read"}``: ``sync`` then the same read, after healing.

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
from dataclasses import dataclass
from typing import Any, Iterator

from kazoo.exceptions import NoNodeError

from checkers.history import Op
from workloads import _zk
from workloads.checks import check_set

BASE = "/squall/set"


class SetClient(_zk.ZkClient):
    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        if f == "add" and isinstance(value, int):
            return _zk.run(self.conn, lambda: self._add(value), fail_value=value)
        if f == "read":
            return _zk.run(self.conn, self._read, fail_value=None)
        if f == "final-read":
            return _zk.run(self.conn, lambda: self._read(sync=True), fail_value=None)
        return {"type": "fail", "value": value, "zxid": None,
                "error": f"bad set op {op!r}: f must be add (int value), read or final-read"}

    def _add(self, n: int) -> int:
        self.conn.wait(self.conn.zk.create_async(f"{BASE}/e-{n}", b""))
        return n

    def _read(self, sync: bool = False) -> list[int]:
        if sync:  # the final read must not be a lagging follower's view
            self.conn.wait(self.conn.zk.sync_async(BASE))
        try:
            children = self.conn.wait(self.conn.zk.get_children_async(BASE))
        except NoNodeError:
            children = []
        out = []
        for name in children:
            if name.startswith("e-"):
                try:
                    out.append(int(name[2:]))
                except ValueError:
                    out.append(name)  # an unexpected element, kept for the checker
        return sorted(out, key=str) if any(isinstance(x, str) for x in out) else sorted(out)


@dataclass
class SetWorkload:
    name: str = "set"
    read_fraction: float = 0.05
    final_each_thread: bool = False
    converge_paths: tuple[str, ...] = (BASE,)
    # Progress (checkers.availability): adds and reads acknowledged, and the
    # final read completes after healing.
    progress_kinds = {"add": "write", "read": "read", "final-read": "read"}
    progress_answered: tuple[str, ...] = ()

    def setup(self, hosts: str) -> None:
        _zk.with_setup_connection(hosts, lambda zk: zk.ensure_path(BASE))

    def client(self) -> SetClient:
        return SetClient()

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
