"""A kazoo connection for the ZooKeeper-protocol databases' workload clients:
one node or all of them (in the runner's order), short timeouts, and the
mapping of kazoo's outcomes to ok / fail / info.

Why short timeouts: under faults an op must end quickly as ``info`` so the
runner can retire the process and move on. Every call goes through the async
API with an explicit wait bound, so a paused server cannot block a worker
forever. ``zxid`` is the reply header's zxid (kazoo stores it in
``client.last_zxid`` before completing the call; a client has one call in
flight at a time, so after a call it is that reply's zxid) -- for a read, the
server's last applied zxid; for a write, the write's own zxid.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RolledBackError,
    SessionExpiredError,
    SessionMovedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState, KeeperState
from kazoo.retry import KazooRetry

logging.getLogger("kazoo").setLevel(logging.CRITICAL)

# Definite refusals: the server decided and nothing was applied.
DEFINITE = (BadVersionError, NoNodeError, NodeExistsError, NotEmptyError, RolledBackError)
# Indeterminate: the request may or may not have been applied.
INDETERMINATE = (
    ConnectionLoss,
    ConnectionClosedError,
    OperationTimeoutError,
    SessionExpiredError,
    SessionMovedError,
    KazooTimeoutError,
)


class Definite(Exception):
    """A workload-level definite failure (e.g. a cas whose expected value is
    not there, confirmed through the leader): reported as ``fail``."""


class NotConnected(Exception):
    """Raised before sending anything: safe to report as ``fail``."""


def error_name(exc: BaseException) -> str:
    name = type(exc).__name__
    return name[:-5] if name.endswith("Error") else name


class _Client(KazooClient):
    """kazoo's client, except that a new session (after an expiry) keeps the
    last zxid the old one saw: kazoo zeroes it, so its next connect request
    would let a lagging server accept it and the client would see the tree go
    back in time. Keeping it makes one client (one history process) a single
    system image across sessions, as one ZooKeeper handle is across
    reconnections: a server behind that zxid refuses the connection."""

    def _reset(self) -> None:
        last = getattr(self, "last_zxid", 0)
        super()._reset()
        self.last_zxid = last


class ZkConn:
    """A kazoo client for one connect string (one node, or all of them in
    the order given: kazoo's own shuffling is off, the runner shuffles)."""

    def __init__(self) -> None:
        self.zk: Any = None  # a KazooClient once opened (kazoo is untyped)
        self.timeout_s = 5.0
        self.hosts = ""
        # Sessions a server refused to resume as expired (kazoo then starts a new
        # one), in order; appended from kazoo's connection thread. Evidence that
        # the session is over, unlike a client we closed and reopened ourselves.
        self.expired: list[int] = []
        self.reopened = 0  # clients replaced after kazoo stopped for good (CLOSED)

    def open(self, hosts: str, timeout_s: float, last_zxid: int = 0) -> None:
        """Connect; a failure to connect is not raised: ``call`` then fails
        fast with NotConnected (nothing was sent, so ``fail``). ``last_zxid``:
        the zxid this client has already seen (a reopened client keeps it)."""
        self.hosts, self.timeout_s = hosts, timeout_s
        self.zk = _Client(
            hosts=hosts,
            timeout=timeout_s,
            randomize_hosts=False,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0, ignore_expire=False),
            command_retry=None,
        )
        zk = self.zk
        zk.last_zxid = last_zxid
        current: list[int] = []  # the session id last seen connected

        def on_state(state: KazooState) -> None:
            if state == KazooState.CONNECTED:
                cid = zk.client_id
                current[:] = [cid[0]] if cid and cid[0] else []
            # LOST comes for an expiry and for a close; only an expiry leaves
            # client_state at EXPIRED_SESSION.
            elif state == KazooState.LOST and zk.client_state == KeeperState.EXPIRED_SESSION and current:
                self.expired.append(current.pop())

        zk.add_listener(on_state)
        try:
            self.zk.start(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - reported per op as not-connected
            pass

    @property
    def connected(self) -> bool:
        return self.zk is not None and self.zk.connected

    def session_id(self) -> int | None:
        if self.zk is None:
            return None
        sid = self.zk.client_id
        return None if not sid else sid[0]

    def wait_connected(self) -> None:
        if self.zk is None:
            raise NotConnected("client not opened")
        if self.zk.connected:
            return
        if self.zk.client_state == KeeperState.CLOSED:
            # kazoo has given up for good: its session expired while the node
            # was unreachable (e.g. the only node paused past the session
            # timeout), and it never reconnects after that. Start a fresh
            # client, hence a fresh session, as a restarted client would.
            last = self.zk.last_zxid or 0
            self.close()
            self.reopened += 1
            self.open(self.hosts, self.timeout_s, last)
            if self.zk is not None and self.zk.connected:
                return
        if self.zk is None or not self.zk._live.wait(self.timeout_s):  # kazoo's connected event
            raise NotConnected(f"not connected to {self.hosts} within {self.timeout_s}s")

    def wait(self, async_result: Any) -> Any:
        """Wait for an async kazoo result, bounded by the session timeout."""
        return async_result.get(timeout=self.timeout_s * 1.5)

    def peer(self) -> str | None:
        """The connected server's "host:port", or None."""
        try:
            host, port = self.zk._connection._socket.getpeername()[:2]  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - not connected
            return None
        return f"{host}:{port}"

    def session_hex(self) -> str | None:
        sid = self.session_id()
        return None if not sid else f"{sid:#x}"

    def last_zxid(self) -> int | None:
        z = getattr(self.zk, "last_zxid", None)
        return z if z else None

    def close(self) -> None:
        zk, self.zk = self.zk, None
        if zk is None:
            return
        for step in (zk.stop, zk.close):
            try:
                step()
            except Exception:  # noqa: BLE001 - closing must not raise
                pass


class ZkClient:
    """A workload client over one ``ZkConn``: the open and close every
    interface's client shares (``workloads.base.Client``); subclasses add
    ``invoke`` and their own settings."""

    def __init__(self) -> None:
        self.conn = ZkConn()

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.conn.open(hosts, timeout_s)

    def close(self) -> None:
        self.conn.close()


def run(conn: ZkConn, body: Callable[[], Any], fail_value: Any = None) -> dict[str, Any]:
    """Run ``body`` (which returns the ok value) and map exceptions.

    Definite errors (and ``Definite``) -> fail; NotConnected -> fail (nothing sent);
    anything else -> info (conservative: it may have taken effect).

    A result with an answer from a server (ok, or a definite fail) also says
    which server (``server``: "host:port") and session (``session``) it ran
    on, as seen right after the reply."""
    out = _run(conn, body, fail_value)
    if out["type"] != "info" and out.get("zxid") is not None:
        out["server"], out["session"] = conn.peer(), conn.session_hex()
    return out


def _run(conn: ZkConn, body: Callable[[], Any], fail_value: Any = None) -> dict[str, Any]:
    try:
        conn.wait_connected()
        value = body()
    except NotConnected as exc:
        return {"type": "fail", "value": fail_value, "error": f"not-connected: {exc}", "zxid": None}
    except Definite as exc:
        return {"type": "fail", "value": fail_value, "error": str(exc), "zxid": conn.last_zxid()}
    except DEFINITE as exc:
        return {"type": "fail", "value": fail_value, "error": error_name(exc), "zxid": conn.last_zxid()}
    except INDETERMINATE as exc:
        return {"type": "info", "value": fail_value, "error": error_name(exc), "zxid": None}
    except (KazooException, Exception) as exc:  # noqa: BLE001 - unknown outcome
        return {"type": "info", "value": fail_value, "error": f"{type(exc).__name__}: {exc}", "zxid": None}
    return {"type": "ok", "value": value, "error": None, "zxid": conn.last_zxid()}


def run_bounded(conn: ZkConn, body: Callable[[], Any], limit_s: float, fail_value: Any = None) -> dict[str, Any]:
    """``run`` with a hard time bound, for bodies that call kazoo's blocking
    APIs (recipes such as Lock call sync methods without timeouts, which wait
    forever while the client is disconnected from a paused server). On
    timeout the connection is closed -- which fails kazoo's pending calls and
    so ends the body's thread -- and the op is ``info``."""
    box: dict[str, Any] = {}

    def target() -> None:
        box["out"] = run(conn, body, fail_value)

    worker = threading.Thread(target=target, name="zk-op", daemon=True)
    worker.start()
    worker.join(limit_s)
    if worker.is_alive():
        conn.close()
        worker.join(conn.timeout_s)
        return {"type": "info", "value": fail_value, "zxid": None, "error": f"timeout: no answer within {limit_s:.1f}s"}
    return box["out"]


def with_setup_connection(hosts: str, body: Callable[[Any], None], timeout_s: float = 10.0) -> None:
    """Run ``body(kazoo_client)`` on a short-lived connection (an interface's setup)."""
    conn = ZkConn()
    try:
        conn.open(hosts, timeout_s)
        conn.wait_connected()
        body(conn.zk)
    finally:
        conn.close()


def snapshot(address: str, paths: tuple[str, ...] | list[str], timeout_s: float = 10.0) -> dict[str, Any]:
    """One node's view of ``paths`` and everything under them, read directly
    from that node (a client bound to its address only) after a ``sync`` of
    each path there: ``{"sync_zxid": z, "paths": {path: [data, version,
    mzxid]}}`` (data as text). A missing base path is left out. Raises when
    the node cannot be reached or answers with an error."""
    conn = ZkConn()
    try:
        conn.open(address, timeout_s)
        conn.wait_connected()
        zk = conn.zk
        for base in paths:
            conn.wait(zk.sync_async(base))
        sync_zxid = conn.last_zxid()
        found: dict[str, list[Any]] = {}
        todo = list(paths)
        while todo:
            path = todo.pop()
            try:
                data, stat = conn.wait(zk.get_async(path))
                children = conn.wait(zk.get_children_async(path))
            except NoNodeError:
                continue
            found[path] = [(data or b"").decode("utf-8", "replace"), stat.version, stat.mzxid]
            todo.extend(f"{path.rstrip('/')}/{c}" for c in children)
        return {"sync_zxid": sync_zxid, "paths": found}
    finally:
        conn.close()


# -- arrival logging and addWatch, for the watch workload -------------------
# kazoo 2.11 neither offers addWatch nor exposes the order in which
# notifications and replies arrive; both are reached through its connection
# handler here (kazoo internals: ``_connection._read_watch_event``,
# ``_connection._read_response``, ``_pending``, ``_call``).

CREATED_EVENT, DELETED_EVENT, CHANGED_EVENT, CHILD_EVENT = 1, 2, 3, 4
PERSISTENT, PERSISTENT_RECURSIVE = 0, 1  # addWatch modes


class AddWatch:
    """ZooKeeper's addWatch request (opcode 106; ZooKeeper 3.6+)."""

    type = 106

    def __init__(self, path: str, mode: int) -> None:
        if mode not in (PERSISTENT, PERSISTENT_RECURSIVE):
            raise ValueError(
                f"addWatch mode must be {PERSISTENT} (persistent) or "
                f"{PERSISTENT_RECURSIVE} (persistent-recursive), not {mode!r}"
            )
        self.path, self.mode = path, mode

    def serialize(self) -> bytes:
        from kazoo.protocol.serialization import int_struct, write_string

        return bytes(write_string(self.path)) + int_struct.pack(self.mode)

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> bool:
        return True  # the reply has no body


def send_request(zk: KazooClient, request: Any) -> Any:
    """Queue a request kazoo has no method for; returns its async result."""
    async_result = zk.handler.async_result()
    zk._call(request, async_result)
    return async_result


def hook_arrivals(zk: KazooClient, log: list[tuple]) -> None:
    """Append to ``log``, from kazoo's connection thread and in arrival
    order: ``("event", type, path)`` for every notification, ``("reply",
    id(async_result))`` for every reply, ``("state", state, last zxid)`` for
    every connection state change (the last zxid the client had seen then)."""
    from kazoo.protocol.serialization import Watch

    handler = zk._connection
    read_event, read_response = handler._read_watch_event, handler._read_response

    def on_event(buffer: Any, offset: int) -> Any:
        watch, _ = Watch.deserialize(buffer, offset)
        log.append(("event", watch.type, zk.unchroot(watch.path)))
        return read_event(buffer, offset)

    def on_response(header: Any, buffer: Any, offset: int) -> Any:
        if zk._pending:
            log.append(("reply", id(zk._pending[0][1])))
        return read_response(header, buffer, offset)

    def on_state(state: Any) -> None:
        log.append(("state", state, zk.last_zxid))

    handler._read_watch_event, handler._read_response = on_event, on_response
    zk.add_listener(on_state)


def reply_position(log: list[tuple], async_result: Any) -> int:
    """Where the reply of ``async_result`` sits in an arrival log."""
    token = ("reply", id(async_result))
    for i in range(len(log) - 1, -1, -1):
        if log[i] == token:
            return i
    raise RuntimeError("the reply is not in the arrival log (hook_arrivals not installed?)")


def zxid_at_break(log: list[tuple], start: int) -> int | None:
    """The last zxid seen before the first connection change after ``start``."""
    return next((e[2] for e in log[start:] if e[0] == "state"), None)


def same_connection(log: list[tuple], start: int, end: int) -> bool:
    """No connection state change between positions ``start`` and ``end``."""
    return not any(e[0] == "state" for e in log[start:end])


def trace(log: list[tuple], start: int, end: int, path: str) -> list[list[Any]]:
    """The connection changes and ``path``'s notifications strictly between
    two positions, as evidence: ``["state", name, last zxid]`` / ``["event", type]``."""
    out: list[list[Any]] = []
    for e in log[start + 1 : end]:
        if e[0] == "state":
            out.append(["state", str(e[1]), e[2]])
        elif e[0] == "event" and e[2] == path:
            out.append(["event", e[1]])
    return out


def count_events(log: list[tuple], start: int, end: int, type_: int, path: str) -> int:
    """Notifications of ``type_`` for ``path`` strictly between two positions."""
    return sum(1 for e in log[start + 1 : end] if e == ("event", type_, path))


def refusal_only_retry(max_tries: int = 20) -> Any:
    """A ``client.retry`` policy for kazoo recipes that retries only the
    recipes' own ForceRetryError (BadVersion, a vanished queue item), never a
    lost connection: kazoo's default also retries ConnectionLoss, and a
    retried write whose first attempt was applied is applied twice (Counter)
    or consumes a second item while the first is lost (Queue)."""
    from kazoo.retry import ForceRetryError

    retry = KazooRetry(max_tries=max_tries, delay=0.01, max_delay=0.2)
    retry.retry_exceptions = (ForceRetryError,)
    return retry


class SetWatches:
    """ZooKeeper's setWatches request (opcode 101): re-register one-shot
    watches on a new connection of the same session; the server fires at
    once every watch whose znode changed after ``relative_zxid`` (what the
    Java client does on reconnect; kazoo 2.11 does not)."""

    type = 101

    def __init__(self, relative_zxid: int, data: list[str], exist: list[str], child: list[str]) -> None:
        self.relative_zxid, self.data, self.exist, self.child = relative_zxid, data, exist, child

    def serialize(self) -> bytes:
        import struct

        from kazoo.protocol.serialization import int_struct, write_string

        out = bytearray(struct.pack("!q", self.relative_zxid))
        for paths in (self.data, self.exist, self.child):
            out += int_struct.pack(len(paths))
            for p in paths:
                out += write_string(p)
        return bytes(out)

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> bool:
        return True  # the reply has no body
