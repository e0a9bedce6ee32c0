"""The session interface on a ZooKeeper-protocol database: ephemeral znodes
under ``/squall/session`` live exactly as long as their session
(workloads/session.py: op source, checks and the meaning of each field).

Each client holds one kazoo session and:

- create: an ephemeral ``/squall/session/e-<tag>-<n>`` (every other one
  ephemeral *sequential*, ``e-<tag>-<n>-s<10 digits>``: the guarantee covers both
  kinds) -> ok ``{"node": name, "session": sid, "expired": [...], "reopened": k}``
  (sid as a hex string); a create that did not complete names the sequential
  one by its prefix (``e-<tag>-<n>-s``);
- close: closeSession, confirmed by the server's reply, then a new session
  -> ok ``{"closed": old_sid, "session": new_sid, "expired": [...]}``;
- final-read: ``sync``, then the children of ``/squall/session`` and their
  ``ephemeralOwner`` -> ok ``{"session": sid, "nodes": {name: owner}, "expired": [...]}``.

``"expired"``: the sessions a server refused to resume as expired since the
client's previous ok op (kazoo reports the expiry, then opens a new session).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import NoNodeError
from kazoo.protocol.serialization import Close

from harness.dbs.zk import conn as _zk

BASE = "/squall/session"


class _ConfirmedClose(Close):
    """kazoo's Close request, made truthy and given a reply decoder: kazoo
    completes a request's async result only when the request object is
    truthy, and an empty namedtuple is not."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return True

    @classmethod
    def deserialize(cls, data: bytes, offset: int) -> bool:
        return True


def sid_hex(sid: int | None) -> str | None:
    return None if sid is None else f"{sid:#x}"


class SessionClient:
    def __init__(self) -> None:
        self.conn = _zk.ZkConn()
        self.counter = 0
        self.tag = uuid.uuid4().hex[:12]  # node names unique across clients
        self._expired_reported = 0  # how much of self.conn.expired was taken already
        self._expired_carry: list[str | None] = []  # taken from a replaced connection, not yet in the history

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.hosts, self.timeout_s = hosts, timeout_s
        self.conn.open(hosts, timeout_s)

    def close(self) -> None:
        self.conn.close()

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f = op.get("f")
        if f == "create":
            self.counter += 1
            sequential = self.counter % 2 == 0
            name = f"{self.tag}-{self.counter}" + ("-s" if sequential else "")
            return _zk.run(self.conn, lambda: self._create(name, sequential), fail_value={"node": f"e-{name}"})
        if f == "close":
            return _zk.run(self.conn, self._close_session, fail_value=None)
        if f == "final-read":
            return _zk.run(self.conn, self._final_read, fail_value=None)
        return {
            "type": "fail",
            "value": op.get("value"),
            "zxid": None,
            "error": f"bad session op {op!r}: f must be create, close or final-read",
        }

    def _sid(self) -> str | None:
        return sid_hex(self.conn.session_id())

    def _take_expired(self) -> list[str | None]:
        """Sessions reported expired since the last ok op (see the module docstring)."""
        seen = list(self.conn.expired)
        new = seen[self._expired_reported :]
        self._expired_reported = len(seen)
        out, self._expired_carry = self._expired_carry + [sid_hex(s) for s in new], []
        return out

    def _create(self, name: str, sequential: bool = False) -> dict[str, Any]:
        sid = self._sid()
        path = self.conn.wait(self.conn.zk.create_async(f"{BASE}/e-{name}", b"", ephemeral=True, sequence=sequential))
        after = self._sid()
        if after != sid:  # the session changed under us: which one owns it is unclear
            raise RuntimeError(f"session changed during create ({sid} -> {after})")
        return {
            "node": path.rsplit("/", 1)[1],
            "session": sid,
            "expired": self._take_expired(),
            "reopened": self.conn.reopened,
        }

    def _close_session(self) -> dict[str, Any]:
        """Close the session and confirm the server's reply to closeSession.

        kazoo's ``stop()`` sends closeSession but does not say whether the
        reply came; without it the session may live on until it expires, and
        claiming "closed" would make the checker expect its ephemerals gone
        too early. So the Close request is queued with our own async result
        (kazoo's internal ``_call``), and only its reply makes the op ok."""
        old = self._sid()
        zk = self.conn.zk
        reply = zk.handler.async_result()
        zk._call(_ConfirmedClose(), reply)
        try:
            self.conn.wait(reply)
        finally:
            self._expired_carry = self._take_expired()  # reported by the next ok op if not this one
            self.conn.close()
            self.conn = _zk.ZkConn()
            self._expired_reported = 0
            self.conn.open(self.hosts, self.timeout_s)
        self.conn.wait_connected()
        return {"closed": old, "session": self._sid(), "expired": self._take_expired()}

    def _final_read(self) -> dict[str, Any]:
        zk = self.conn.zk
        sid = self._sid()
        # sync first: this session's server must have applied every close and
        # expiry the leader committed before now (local reads may lag).
        self.conn.wait(zk.sync_async(BASE))
        try:
            children = self.conn.wait(zk.get_children_async(BASE))
        except NoNodeError:
            children = []
        nodes: dict[str, str | None] = {}
        for name in children:
            stat = self.conn.wait(zk.exists_async(f"{BASE}/{name}"))
            if stat is not None:
                nodes[name] = sid_hex(stat.ephemeralOwner) if stat.ephemeralOwner else None
        if self._sid() != sid:
            raise RuntimeError("session changed during the final read")
        return {"session": sid, "nodes": nodes, "expired": self._take_expired()}


class SessionClients:
    converge_paths: tuple[str, ...] = (BASE,)

    def __init__(self, settings: Mapping[str, Any]) -> None:
        pass

    def setup(self, hosts: str) -> None:
        _zk.with_setup_connection(hosts, lambda zk: zk.ensure_path(BASE))

    def client(self) -> SessionClient:
        return SessionClient()
