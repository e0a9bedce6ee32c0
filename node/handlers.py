"""The requests a member answers from its own applied state: reads, watches, whoAmI, and friends.

Each handler is ``handler(conn, xid, record)`` and answers through
``conn.send(frame)``. The connection runs it when the request reaches the
head of its reply queue, i.e. after every earlier request of the same
connection was answered, so a client reads its own writes and a watch is
registered against the state its read saw. Writes, ``sync`` and
``closeSession`` go through the replica instead (``node.connection``); pings
and auth packets are answered at once.

Every reply header carries the member's last applied zxid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.errors import Err, ZkError
from node.replies import TREE_WRITES, who_am_i
from node.wire import protocol as P

if TYPE_CHECKING:
    from node.connection import ClientConnection


def _zxid(conn: ClientConnection) -> int:
    return conn.server.replica.last_zxid


def _watch(conn: ClientConnection, path: str, kind: str) -> None:
    conn.server.watches.add(conn.session_id, path, kind)


def exists(conn: ClientConnection, xid: int, r: P.PathWatchRequest) -> None:
    zxid = _zxid(conn)
    try:
        stat = conn.server.replica.read_tree.exists(r.path)
    except ZkError as exc:
        conn.send(P.reply(xid, zxid, exc.code))
        return
    if r.watch:
        _watch(conn, r.path, "data" if stat is not None else "exist")
    conn.send(P.reply(xid, zxid, Err.NO_NODE) if stat is None else P.reply_stat(xid, zxid, stat))


def get_data(conn: ClientConnection, xid: int, r: P.PathWatchRequest) -> None:
    zxid = _zxid(conn)
    try:
        data, stat = conn.server.replica.read_tree.get_data(r.path, conn.identities)
    except ZkError as exc:
        conn.send(P.reply(xid, zxid, exc.code))
        return
    if r.watch:
        _watch(conn, r.path, "data")
    conn.send(P.reply_data(xid, zxid, data, stat))


def _children(conn: ClientConnection, xid: int, r: P.PathWatchRequest, with_stat: bool) -> None:
    zxid = _zxid(conn)
    try:
        children, stat = conn.server.replica.read_tree.get_children(r.path, conn.identities)
    except ZkError as exc:
        conn.send(P.reply(xid, zxid, exc.code))
        return
    if r.watch:
        _watch(conn, r.path, "child")
    conn.send(P.reply_children(xid, zxid, list(children), stat if with_stat else None))


def get_children(conn: ClientConnection, xid: int, r: P.PathWatchRequest) -> None:
    _children(conn, xid, r, False)


def get_children2(conn: ClientConnection, xid: int, r: P.PathWatchRequest) -> None:
    _children(conn, xid, r, True)


def get_acl(conn: ClientConnection, xid: int, r: P.PathRequest) -> None:
    zxid = _zxid(conn)
    try:
        acl, stat = conn.server.replica.tree.get_acl(r.path, conn.identities)
    except ZkError as exc:
        conn.send(P.reply(xid, zxid, exc.code))
        return
    conn.send(P.reply_acl(xid, zxid, acl, stat))


def get_ephemerals(conn: ClientConnection, xid: int, r: P.PathRequest) -> None:
    paths = conn.server.replica.tree.get_ephemerals(conn.session_id, r.path or "/")
    conn.send(P.reply_children(xid, _zxid(conn), sorted(paths)))


def all_children_number(conn: ClientConnection, xid: int, r: P.PathRequest) -> None:
    zxid = _zxid(conn)
    try:
        n = conn.server.replica.tree.count_all_children(r.path, conn.identities)
    except ZkError as exc:
        conn.send(P.reply(xid, zxid, exc.code))
        return
    conn.send(P.reply_int(xid, zxid, n))


def who_am_i_(conn: ClientConnection, xid: int, r: Any) -> None:
    conn.send(P.reply_whoami(xid, _zxid(conn), who_am_i(conn.identities)))


def multi_read(conn: ClientConnection, xid: int, r: P.MultiRequest) -> None:
    zxid = _zxid(conn)
    tree = conn.server.replica.read_tree
    results = []
    for op, rec in r.ops:
        if op not in P.MULTI_READ_OPS:
            conn.send(P.reply(xid, zxid, Err.BAD_ARGUMENTS))
            return
        try:
            if op == P.GET_DATA:
                results.append(P.OpResult(P.GET_DATA, 0, tree.get_data(rec.path, conn.identities)))
            else:
                children, _ = tree.get_children(rec.path, conn.identities)
                results.append(P.OpResult(P.GET_CHILDREN, 0, list(children)))
        except ZkError as exc:
            results.append(P.OpResult(P.ERROR, int(exc.code)))
    conn.send(P.reply_multi(xid, zxid, results))


def add_watch(conn: ClientConnection, xid: int, r: P.AddWatchRequest) -> None:
    zxid = _zxid(conn)
    if r.mode not in (P.ADD_WATCH_PERSISTENT, P.ADD_WATCH_PERSISTENT_RECURSIVE):
        conn.send(P.reply(xid, zxid, Err.BAD_ARGUMENTS))
        return
    _watch(conn, r.path, "persistent" if r.mode == P.ADD_WATCH_PERSISTENT else "persistent_recursive")
    conn.send(P.reply_int(xid, zxid, 0))


def _remove_watches(conn: ClientConnection, xid: int, r: P.WatchTypeRequest, remove: bool) -> None:
    zxid = _zxid(conn)
    kind = {P.WATCHER_CHILDREN: "child", P.WATCHER_DATA: "data", P.WATCHER_ANY: "any"}.get(r.type)
    if kind is None:
        conn.send(P.reply(xid, zxid, Err.BAD_ARGUMENTS))
        return
    w = conn.server.watches
    found = w.remove(conn.session_id, r.path, kind) if remove else w.contains(conn.session_id, r.path, kind)
    conn.send(P.reply(xid, zxid, 0 if found else Err.NO_WATCHER))


def remove_watches(conn: ClientConnection, xid: int, r: P.WatchTypeRequest) -> None:
    _remove_watches(conn, xid, r, True)


def check_watches(conn: ClientConnection, xid: int, r: P.WatchTypeRequest) -> None:
    _remove_watches(conn, xid, r, False)


def set_watches(conn: ClientConnection, xid: int, r: P.SetWatches) -> None:
    replica = conn.server.replica
    events = conn.server.watches.set_watches(
        conn.session_id,
        r.relative_zxid,
        list(r.data),
        list(r.exist),
        list(r.child),
        list(r.persistent),
        list(r.persistent_recursive),
        replica.tree,
    )
    zxid = replica.last_zxid
    for ev in events:
        conn.send(P.notification(ev.type, P.STATE_SYNC_CONNECTED, ev.path, ev.zxid))
    conn.send(P.reply(xid, zxid, 0))


LOCAL_HANDLERS: dict[int, Callable[[ClientConnection, int, Any], None]] = {
    P.EXISTS: exists,
    P.GET_DATA: get_data,
    P.GET_ACL: get_acl,
    P.GET_CHILDREN: get_children,
    P.GET_CHILDREN2: get_children2,
    P.MULTI_READ: multi_read,
    P.CHECK_WATCHES: check_watches,
    P.REMOVE_WATCHES: remove_watches,
    P.SET_WATCHES: set_watches,
    P.SET_WATCHES2: set_watches,
    P.GET_EPHEMERALS: get_ephemerals,
    P.GET_ALL_CHILDREN_NUMBER: all_children_number,
    P.ADD_WATCH: add_watch,
    P.WHO_AM_I: who_am_i_,
}
# Answered by the connection itself: pings and auth at once, sync, closeSession and reconfig through the replica.
CONNECTION_OPS = frozenset({P.PING, P.AUTH, P.SASL, P.SYNC, P.CLOSE_SESSION, P.RECONFIG})
assert set(LOCAL_HANDLERS) | TREE_WRITES | CONNECTION_OPS == set(P.KNOWN_OPS), "every decodable opcode needs a handler"
assert not (set(LOCAL_HANDLERS) & (TREE_WRITES | CONNECTION_OPS))

__all__ = ["CONNECTION_OPS", "LOCAL_HANDLERS"]
