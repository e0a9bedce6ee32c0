"""The election interface on a ZooKeeper-protocol database: kazoo's
``Election`` recipe with fenced leader writes (workloads/election.py: op
source, checks).

lead / final-lead: ``Election.run(leader)`` with a timer that ``cancel()``s
the candidacy after the bound (``elect_timeout_s`` for lead, 3 x the session
timeout for final-lead). As leader, the write is ``multi([check(its
contender znode), setData(/squall/election/fenced, n+1)])``, which commits
only while its contender znode exists, i.e. while it leads. ok value
``{"read": n, "wrote": n+1, "lock": contender node, "write_zxid": zxid}``;
not elected in time -> ``fail`` (``not-elected``); the fence rejected ->
``fail`` (``fence-rejected``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from kazoo.recipe.election import Election

from harness.dbs.zk import conn as _zk

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
            return {
                "type": "fail",
                "value": op.get("value"),
                "zxid": None,
                "error": f"bad election op {op!r}: f must be lead or final-lead",
            }
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


class ElectionClients:
    """Settings: ``elect_timeout_s`` (default 2)."""

    converge_paths: tuple[str, ...] = (BASE,)  # every node must hold the same copy at the end

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.elect_timeout_s = float(settings.get("elect_timeout_s", 2.0))

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            zk.ensure_path(ELECTION_PATH)
            if zk.exists(RESOURCE) is None:
                zk.create(RESOURCE, b"0")

        _zk.with_setup_connection(hosts, create)

    def client(self) -> ElectionClient:
        return ElectionClient(self.elect_timeout_s)
