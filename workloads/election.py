"""The election workload: kazoo's ``Election`` recipe with fenced leader writes.

Guarantees checked: the recipe is ZooKeeper's "Leader Election" recipe
(ephemeral sequential contenders, the lowest leads; "ZooKeeper Recipes and
Solutions"), resting on ephemeral nodes being deleted when their session
ends (Programmer's Guide, "Ephemeral Nodes", "ZooKeeper Sessions") and on
linearizable writes. So:

- at most one leader acts at a time: each leader's write is
  ``multi([check(its contender znode), setData(/squall/election/fenced, n+1)])``,
  which commits only while its contender znode exists, i.e. while it leads;
  the fenced writes must form one chain in zxid order (no two read the same
  n, none goes backwards) -- ``workloads.checks.check_lock``'s chain check;
- after the leaders' sessions end a new leader is elected within a bound:
  the healed final phase runs one more election, which must be won within
  ``3 x`` the session timeout (``checkers.recipes.check_elected``).

Ops: ``{"f": "lead"}`` (main phase) and ``{"f": "final-lead"}`` (after
healing): ``Election.run(leader)`` with a timer that ``cancel()``s the
candidacy after the bound. ok value ``{"read": n, "wrote": n+1, "lock":
contender node, "write_zxid": zxid}``; not elected in time -> ``fail``
(``not-elected``); the fence rejected -> ``fail`` (``fence-rejected``).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from kazoo.recipe.election import Election

from checkers.history import Op
from checkers.recipes import check_elected
from checkers.result import merge, run_checker
from workloads import _zk
from workloads.checks import check_lock

BASE = "/squall/election"
ELECTION_PATH = f"{BASE}/election"
RESOURCE = f"{BASE}/fenced"


class ElectionClient(_zk.ZkClient):
    def __init__(self, elect_timeout_s: float = 2.0) -> None:
        super().__init__()
        self.elect_timeout_s = elect_timeout_s

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f = op.get("f")
        if f not in ("lead", "final-lead"):
            return {"type": "fail", "value": op.get("value"), "zxid": None,
                    "error": f"bad election op {op!r}: f must be lead or final-lead"}
        bound = self.elect_timeout_s if f == "lead" else 3 * self.conn.timeout_s
        out = _zk.run_bounded(self.conn, lambda: self._lead(bound), bound + 3 * self.conn.timeout_s)
        if out["type"] != "ok":
            self._end_candidacy(reopen=out["type"] == "fail")
        return out

    def _end_candidacy(self, reopen: bool) -> None:
        """After a lead op that did not end cleanly, end its session, so a
        contender node it may have left goes with it. kazoo deletes its node
        when a candidacy is cancelled or fails only while connected (ZooKeeper
        followers drop every client when they lose their leader): a node left
        behind, its session alive, would stay ahead of every later contender
        and block the healed final election, whose premise is that every
        earlier contender's session has ended. A ``fail`` keeps its process,
        so the client reopens with a new session (keeping the last zxid seen);
        an ``info`` retires it."""
        hosts, timeout_s, last = self.conn.hosts, self.conn.timeout_s, self.conn.last_zxid() or 0
        self.conn.close()
        if reopen and hosts:
            self.conn.open(hosts, timeout_s, last)

    def _lead(self, bound_s: float) -> dict[str, Any]:
        zk = self.conn.zk
        election = Election(zk, ELECTION_PATH)
        out: dict[str, Any] = {}

        def leader() -> None:
            data, _ = self.conn.wait(zk.get_async(RESOURCE))
            n = int(data.decode() or 0)
            t = zk.transaction()
            t.check(f"{ELECTION_PATH}/{election.lock.node}", 0)
            t.set_data(RESOURCE, str(n + 1).encode())
            results = self.conn.wait(t.commit_async())
            if any(isinstance(r, Exception) for r in results):
                out["rejected"] = [_zk.error_name(r) for r in results]
                return
            out.update(read=n, wrote=n + 1, lock=election.lock.node, write_zxid=self.conn.last_zxid())

        timer = threading.Timer(bound_s, election.cancel)
        timer.daemon = True
        timer.start()
        try:
            election.run(leader)
        finally:
            timer.cancel()
        if "rejected" in out:
            raise _zk.Definite(f"fence-rejected: {out['rejected']}")
        if not out:
            raise _zk.Definite(f"not-elected: no leadership within {bound_s:.1f}s")
        return out


@dataclass
class ElectionWorkload:
    name: str = "election"
    elect_timeout_s: float = 2.0
    final_each_thread: bool = False
    converge_paths: tuple[str, ...] = (BASE,)  # every node must hold the same copy at the end

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            zk.ensure_path(ELECTION_PATH)
            if zk.exists(RESOURCE) is None:
                zk.create(RESOURCE, b"0")

        _zk.with_setup_connection(hosts, create)

    def client(self) -> ElectionClient:
        return ElectionClient(self.elect_timeout_s)

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        while True:
            yield {"f": "lead", "value": None}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-lead", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_election(history)


def check_election(history: list[Op]) -> Any:
    """Fencing over every leader write (main and final phase) + liveness."""
    as_fenced = [dataclasses.replace(op, f="fenced-write") if op.f in ("lead", "final-lead") else op
                 for op in history]
    return merge([run_checker("election-fencing", check_lock, as_fenced),
                  run_checker("election-liveness", check_elected, history)], checker="election")


def make(options: dict[str, Any] | None = None) -> ElectionWorkload:
    return ElectionWorkload()
