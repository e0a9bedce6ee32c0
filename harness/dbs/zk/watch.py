"""The watch interface on a ZooKeeper-protocol database: one-shot and
persistent-recursive watches (workloads/watch.py: op source; checkers/watch.py:
the checks and the meaning of each value field).

Keys ``w0``/``w1`` under ``/squall/watch/w`` carry one-shot data watches,
``c0``/``c1`` under ``/squall/watch/c`` one-shot child watches, ``p0``/``p1``
under ``/squall/watch/p`` the persistent-recursive watch; no path carries two
kinds, so every notification is attributable.

- write ``[key, n]``: setData(str(n)) -> ok ``[key, n-as-str, version]``;
  on ``w1`` and ``p1`` setData of the same data every time (``"same"``: a
  setData that changes nothing still makes a new version and fires the data
  watches, so a server that skips unchanged data is caught) -> ok
  ``[key, "same", version]``. On a child key it changes the key's children
  instead: it creates the child ``n<n>``, or, every other time, deletes the
  oldest child this client created there -> ok ``[key, "+n<n>" or "-n<m>",
  null]`` (no data version).
- write-burst ``[key, [n, ...]]`` (``w0``, ``p0``): one setData per value,
  all sent before the first reply is awaited (pipelined on the connection)
  -> ok ``[key, [[n-as-str, version], ...]]`` in the order sent; a refusal of
  any of them is indeterminate (the ones before it may have applied).
- on ``e0``/``e1`` (under ``/squall/watch/e``, not created by the setup) a
  write instead toggles the znode: create it, or delete it when it exists -> ok
  ``[key, "+" or "-", null]``; exists-read ``[key, None]``: exists with a
  one-shot watch -> ``{"key", "state" ("absent", or the znode's czxid in hex),
  ...}`` and, as a watch-read's, ``"armed"`` (the state it was set in) and
  ``"fired"`` (any notification for the znode arrived in between).
- watch-read ``[key, None]``: getData with a one-shot watch (re-armed by
  every read); on a child key getChildren with a one-shot child watch, whose
  ``data`` is the sorted children joined by commas and ``version`` the key's
  ``cversion`` (it counts child creations and deletions, so a child watch
  set at cversion c must fire before a read shows one above c).
- pwatch-read ``[key, None]``: getData (no watch) after this connection's
  ``addWatch(/squall/watch/p, PERSISTENT_RECURSIVE)`` (kazoo 2.11 has no
  addWatch: the request -- opcode 106 -- goes through kazoo's request queue,
  ``conn.send_request``).

How order is observed: the client hooks kazoo's connection thread (the
notification reader and the reply reader, ``conn.hook_arrivals``) and logs
every notification, every reply and every connection state change in
arrival order. A read's value then says whether the previous watch's event
arrived before its reply.

Watches across a move: kazoo drops every watch on a connection loss and
sends no setWatches. After a reconnect within the same session, this client
sends setWatches itself (``conn.SetWatches``, relative to the last zxid seen
on the connection the watch was set on) for its armed one-shot watches, as
the Java client does; the server fires at once those whose znode changed
since, so the one-shot rule still holds across the move (such reads carry
``"moved": true``). The persistent watch is added again on each new
connection (its events while disconnected are not replayed, so intervals
are judged within one connection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError

from harness.dbs.zk import conn as _zk

BASE = "/squall/watch"
ONE_SHOT = {"w0": f"{BASE}/w/w0", "w1": f"{BASE}/w/w1"}
CHILD = {"c0": f"{BASE}/c/c0", "c1": f"{BASE}/c/c1"}  # one-shot child watches
EXISTS_ROOT = f"{BASE}/e"
EXISTS = {"e0": f"{EXISTS_ROOT}/e0", "e1": f"{EXISTS_ROOT}/e1"}  # exists watches on znodes that come and go
PERSISTENT_ROOT = f"{BASE}/p"
PERSISTENT = {"p0": f"{PERSISTENT_ROOT}/p0", "p1": f"{PERSISTENT_ROOT}/p1"}
PATHS = {**ONE_SHOT, **CHILD, **PERSISTENT}
WATCHED = {**ONE_SHOT, **CHILD}  # the keys watch-read arms a one-shot watch on
ARMED = {**WATCHED, **EXISTS}  # every key a read arms a one-shot watch on (watch-read, exists-read)
ABSENT = "absent"  # an exists-read's state when the znode does not exist
BURST_KEYS = ("w0", "p0")  # keys that take write-burst
SAME = "same"
SAME_DATA = ("w1", "p1")  # keys whose every write sets the same data (SAME)


def _ints(values: Any) -> bool:
    return isinstance(values, list) and bool(values) and all(isinstance(v, int) for v in values)


def _noop_watch(event: Any) -> None:
    """kazoo needs a callable to register a watch; arrivals are logged by the hook."""


class WatchConn(_zk.ZkConn):
    """A ZkConn whose every kazoo client logs arrivals (``_zk.hook_arrivals``)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple] = []
        self.generation = 0

    def open(self, hosts: str, timeout_s: float, last_zxid: int = 0) -> None:
        self.log = []
        self.generation += 1
        _zk.ZkConn.open(self, hosts, timeout_s, last_zxid)
        if self.zk is not None:
            _zk.hook_arrivals(self.zk, self.log)


class WatchClient:
    def __init__(self) -> None:
        self.conn = WatchConn()
        # key -> (version, arm reply pos, log, session, pos since which the
        # connection must be unbroken: the arm, or the last re-registration)
        self.armed: dict[str, tuple[int, int, Any, Any, int]] = {}
        self.rearm_zxid: dict[str, int] = {}  # key -> setWatches' relative zxid
        self.pwatch: tuple[int, Any] | None = None  # (addWatch reply pos, log)
        self.pprev: dict[str, tuple[int, int]] = {}  # key -> (version, reply pos)
        self.kids: dict[str, list[str]] = {k: [] for k in CHILD}  # child key -> children this client made
        self.child_writes = 0

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.conn.open(hosts, timeout_s)

    def close(self) -> None:
        self.conn.close()

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")  # type: tuple[Any, Any]
        key = value[0] if isinstance(value, list) and len(value) == 2 else None
        if f == "write" and (key in PATHS or key in EXISTS) and isinstance(value[1], int):
            return _zk.run(self.conn, lambda: self._write(key, value[1]), fail_value=value)
        if f == "write-burst" and key in BURST_KEYS and _ints(value[1]):
            return _zk.run(self.conn, lambda: self._burst(key, value[1]), fail_value=value)
        if f == "exists-read" and key in EXISTS:
            return _zk.run(self.conn, lambda: self._exists_read(key), fail_value=value)
        if f == "watch-read" and key in WATCHED:
            return _zk.run(self.conn, lambda: self._watch_read(key), fail_value=value)
        if f == "pwatch-read" and key in PERSISTENT:
            return _zk.run(self.conn, lambda: self._pwatch_read(key), fail_value=value)
        return {
            "type": "fail",
            "value": value,
            "zxid": None,
            "error": f"bad watch op {op!r}: f must be write [key in {sorted([*PATHS, *EXISTS])}, int], "
            f"write-burst [key in {sorted(BURST_KEYS)}, [int, ...]], exists-read [key in {sorted(EXISTS)}, null], "
            f"watch-read [key in {sorted(WATCHED)}, null] or pwatch-read "
            f"[key in {sorted(PERSISTENT)}, null]",
        }

    def _write(self, key: str, n: int) -> list:
        if key in CHILD:
            return self._change_children(key, n)
        if key in EXISTS:
            return self._toggle(key)
        data = SAME if key in SAME_DATA else str(n)
        stat = self.conn.wait(self.conn.zk.set_async(PATHS[key], data.encode()))
        return [key, data, stat.version]

    def _toggle(self, key: str) -> list:
        zk = self.conn.zk
        try:
            self.conn.wait(zk.create_async(EXISTS[key], b""))
            return [key, "+", None]
        except NodeExistsError:
            pass
        try:
            self.conn.wait(zk.delete_async(EXISTS[key]))
        except NoNodeError as exc:  # deleted by another client in between: this op changed nothing
            raise _zk.Definite("toggle: the znode went between the create and the delete") from exc
        return [key, "-", None]

    def _exists_read(self, key: str) -> dict[str, Any]:
        self._rearm_after_reconnect()
        zk, log = self.conn.zk, self.conn.log
        ar = zk.exists_async(EXISTS[key], watch=_noop_watch)
        stat = self.conn.wait(ar)
        out: dict[str, Any] = {
            "key": key,
            "state": ABSENT if stat is None else f"{stat.czxid:#x}",
            "client": self.conn.generation,
            "session": self.conn.session_id(),
        }
        # any notification counts: NodeCreated, NodeDeleted, or NodeDataChanged from setWatches
        events = (_zk.CREATED_EVENT, _zk.DELETED_EVENT, _zk.CHANGED_EVENT)
        return self._judge_and_arm(key, out, out["state"], _zk.reply_position(log, ar), events)

    def _burst(self, key: str, ns: list[int]) -> list:
        zk = self.conn.zk
        sent = [(str(n), zk.set_async(PATHS[key], str(n).encode())) for n in ns]  # no wait in between
        try:
            return [key, [[data, self.conn.wait(ar).version] for data, ar in sent]]
        except _zk.DEFINITE as exc:  # not "nothing applied": the writes before it may have
            raise RuntimeError(f"a write of the burst was refused ({_zk.error_name(exc)})") from exc

    def _change_children(self, key: str, n: int) -> list:
        kids = self.kids[key]
        self.child_writes += 1
        if kids and self.child_writes % 2 == 0:
            name = kids.pop(0)  # forgotten first: a delete with no answer is not tried again
            self.conn.wait(self.conn.zk.delete_async(f"{CHILD[key]}/{name}"))
            return [key, f"-{name}", None]
        name = f"n{n}"
        self.conn.wait(self.conn.zk.create_async(f"{CHILD[key]}/{name}", b""))
        kids.append(name)
        return [key, f"+{name}", None]

    def _get(self, key: str, watch: bool) -> tuple[dict[str, Any], int]:
        zk, log = self.conn.zk, self.conn.log
        w = _noop_watch if watch else None
        if key in CHILD:
            ar = zk.get_children_async(PATHS[key], watch=w, include_data=True)
            children, stat = self.conn.wait(ar)
            data, version = ",".join(sorted(children)), stat.cversion
        else:
            ar = zk.get_async(PATHS[key], watch=w)
            raw, stat = self.conn.wait(ar)
            data, version = raw.decode(), stat.version
        pos = _zk.reply_position(log, ar)
        return {
            "key": key,
            "data": data,
            "version": version,
            "client": self.conn.generation,
            "session": self.conn.session_id(),
        }, pos

    def _watch_read(self, key: str) -> dict[str, Any]:
        self._rearm_after_reconnect()
        out, pos = self._get(key, watch=True)
        events = (_zk.CHILD_EVENT,) if key in CHILD else (_zk.CHANGED_EVENT,)
        return self._judge_and_arm(key, out, out["version"], pos, events)

    def _judge_and_arm(self, key: str, out: dict[str, Any], state: Any, pos: int, events: tuple[int, ...]) -> dict:
        """A read's reply at ``pos`` just armed a one-shot watch on ``key`` in ``state`` (a version
        or an exists state). When the previous one was armed on this connection (or re-registered
        on it), say what it was armed in and whether one of its ``events`` arrived before this reply."""
        log, path = self.conn.log, ARMED[key]
        prev = self.armed.get(key)
        if prev is not None and prev[2] is log and prev[3] == out["session"] and _zk.same_connection(log, prev[4], pos):
            out["armed"] = prev[0]
            out["fired"] = any(_zk.count_events(log, prev[1], pos, e, path) for e in events)
            if prev[4] != prev[1]:
                out["moved"] = True
                out["trace"] = _zk.trace(log, prev[1], pos, path)
                out["rearm_zxid"] = self.rearm_zxid.get(key)
        self.armed[key] = (state, pos, log, out["session"], pos)
        return out

    def _rearm_after_reconnect(self) -> None:
        """On a new connection of the same session, re-register the armed
        one-shot watches with setWatches (kazoo drops them on a connection
        loss): the server fires those whose znode changed after the
        client's last zxid, so each keeps its meaning across the move."""
        log, sid = self.conn.log, self.conn.session_id()
        moved = [
            k
            for k, a in self.armed.items()
            if a[2] is log and a[3] == sid and not _zk.same_connection(log, a[4], len(log))
        ]
        if not moved or not self.conn.connected:
            return
        # relative to the last zxid seen on the connection the watch was on
        # (later replies on the new connection came without the watch)
        groups: dict[int, list[str]] = {}
        for k in moved:
            groups.setdefault(_zk.zxid_at_break(log, self.armed[k][4]) or 0, []).append(k)
        for zxid, keys in sorted(groups.items()):
            # an exists watch set on a missing znode is an exist watch, on a present one a data watch
            exist = [ARMED[k] for k in keys if k in EXISTS and self.armed[k][0] == ABSENT]
            child = [ARMED[k] for k in keys if k in CHILD]
            data = [ARMED[k] for k in keys if ARMED[k] not in exist and k not in CHILD]
            ar = _zk.send_request(self.conn.zk, _zk.SetWatches(zxid, data, exist, child))
            self.conn.wait(ar)
            at = _zk.reply_position(log, ar)
            for k in keys:
                self.rearm_zxid[k] = zxid
                v, pos, _, _, _ = self.armed[k]
                # judged from the arm on: events before and after the move
                # count; the connection must hold from the re-registration on
                self.armed[k] = (v, pos, log, sid, at)

    def _pwatch_read(self, key: str) -> dict[str, Any]:
        log = self.conn.log
        if self.pwatch is None or self.pwatch[1] is not log or not _zk.same_connection(log, self.pwatch[0], len(log)):
            ar = _zk.send_request(self.conn.zk, _zk.AddWatch(PERSISTENT_ROOT, _zk.PERSISTENT_RECURSIVE))
            self.conn.wait(ar)
            self.pwatch, self.pprev = (_zk.reply_position(log, ar), log), {}
        out, pos = self._get(key, watch=False)
        prev = self.pprev.get(key)
        if prev is not None and _zk.same_connection(log, self.pwatch[0], pos):
            out["prev_version"] = prev[0]
            out["events"] = _zk.count_events(log, prev[1], pos, _zk.CHANGED_EVENT, PATHS[key])
        self.pprev[key] = (out["version"], pos)
        return out


class WatchClients:
    converge_paths: tuple[str, ...] = (BASE,)  # every node must hold the same copy at the end

    def __init__(self, settings: Mapping[str, Any]) -> None:
        pass

    def setup(self, hosts: str) -> None:
        def create(zk: Any) -> None:
            for path in (*PATHS.values(), EXISTS_ROOT):  # (a child key is the parent of the children it counts)
                if zk.exists(path) is None:
                    zk.create(path, b"", makepath=True)

        _zk.with_setup_connection(hosts, create)

    def client(self) -> WatchClient:
        return WatchClient()
