"""The session workload: ephemeral znodes live exactly as long as their session.

Each process holds one kazoo session and:

- ``{"f": "create"}`` creates an ephemeral ``/squall/session/p<process>-<n>``
  -> ok ``{"node": name, "session": sid}`` (sid as a hex string);
- ``{"f": "close"}`` closes its session and opens a new one -> ok
  ``{"closed": old_sid, "session": new_sid}``; every ephemeral of the closed
  session must then be gone;
- the final op, run by every live process (``final_each_thread``),
  ``{"f": "final-read"}`` -> ok ``{"session": sid, "nodes": {name: owner}}``:
  the children of ``/squall/session`` and their ``ephemeralOwner``.

Every ok output also carries ``"expired"``: the sessions a server refused to
resume as expired since the process's previous ok op (kazoo reports the
expiry, then opens a new session). Sessions are known dead when closed by an
ok ``close`` or reported expired. A session that changed for any other reason
(the client was closed and reopened by us) is not judged: the old one may
still be alive. (Histories without ``"expired"``, from older versions, fall
back to inferring an expiry from a changed sid.) A ``create`` also says how
many times the process's client was reopened (``"reopened"``), for diagnosis.
A dead session's ephemerals are judged only by final reads *called* after the
op that proved it dead returned: a read that ran earlier may have seen the
session alive. Their ephemerals
must be absent at the final reads; ephemerals created by a session that is
still the reading process's current session must be present. Sessions of
retired processes (closed by the runner, or left to expire) are not judged:
the history does not say whether they had ended by the final read.
Check: ``workloads.checks.check_sessions``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from kazoo.exceptions import NoNodeError
from kazoo.protocol.serialization import Close

from checkers.history import Op
from workloads import _zk
from workloads.checks import check_sessions

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
        self._expired_carry: list[str] = []  # taken from a replaced connection, not yet in the history

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.hosts, self.timeout_s = hosts, timeout_s
        self.conn.open(hosts, timeout_s)

    def close(self) -> None:
        self.conn.close()

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f = op.get("f")
        if f == "create":
            self.counter += 1
            name = f"{self.tag}-{self.counter}"
            return _zk.run(self.conn, lambda: self._create(name), fail_value={"node": f"e-{name}"})
        if f == "close":
            return _zk.run(self.conn, self._close_session, fail_value=None)
        if f == "final-read":
            return _zk.run(self.conn, self._final_read, fail_value=None)
        return {"type": "fail", "value": op.get("value"), "zxid": None,
                "error": f"bad session op {op!r}: f must be create, close or final-read"}

    def _sid(self) -> str | None:
        return sid_hex(self.conn.session_id())

    def _take_expired(self) -> list[str]:
        """Sessions reported expired since the last ok op (see the module docstring)."""
        seen = list(self.conn.expired)
        new = seen[self._expired_reported:]
        self._expired_reported = len(seen)
        out, self._expired_carry = self._expired_carry + [sid_hex(s) for s in new], []
        return out

    def _create(self, name: str) -> dict[str, Any]:
        sid = self._sid()
        path = self.conn.wait(self.conn.zk.create_async(f"{BASE}/e-{name}", b"", ephemeral=True))
        after = self._sid()
        if after != sid:  # the session changed under us: which one owns it is unclear
            raise RuntimeError(f"session changed during create ({sid} -> {after})")
        return {"node": path.rsplit("/", 1)[1], "session": sid, "expired": self._take_expired(),
                "reopened": self.conn.reopened}

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


@dataclass
class SessionWorkload:
    name: str = "session"
    close_fraction: float = 0.1
    final_each_thread: bool = True
    converge_paths: tuple[str, ...] = (BASE,)
    # Progress (checkers.availability): ephemerals created, sessions closed,
    # and every live session's final read completes after healing.
    progress_kinds = {"create": "write", "close": "write", "final-read": "read"}
    progress_answered: tuple[str, ...] = ()

    def setup(self, hosts: str) -> None:
        _zk.with_setup_connection(hosts, lambda zk: zk.ensure_path(BASE))

    def client(self) -> SessionClient:
        return SessionClient()

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        while True:
            yield {"f": "close" if rng.random() < self.close_fraction else "create", "value": None}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "final-read", "value": None}]

    def check(self, history: list[Op]) -> Any:
        return check_sessions(history)


def make(options: dict[str, Any] | None = None) -> SessionWorkload:
    return SessionWorkload()
