"""Watch registrations of one server (pure): add, trigger, remove, re-register.

Mirrors ZooKeeper 3.8's two ``WatchManager`` tables in ``DataTree``:

* the *data* table holds getData and exists watches (one-shot), persistent
  watches and persistent-recursive watches;
* the *child* table holds getChildren watches (one-shot) and persistent
  watches (a persistent watch lives in both tables; a recursive one only in
  the data table).

A tree event fires: NodeCreated / NodeDataChanged -> data table on the path;
NodeDeleted -> data table, then child table on the path (a session already
notified by the data table is not notified twice); NodeChildrenChanged (path
= the parent) -> child table. Persistent-recursive watches on the path or any
ancestor fire for every event except NodeChildrenChanged. One-shot watches
are consumed when they fire; persistent ones stay. Each session gets at most
one notification per event.

The mode of a (session, path) entry in a table is the mode of the last add,
as in ZooKeeper (``WatcherModeManager``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from node.tree import EventType, Stat, WatchEvent

STANDARD = 0
PERSISTENT = 1
PERSISTENT_RECURSIVE = 2

KINDS = ("data", "exist", "child", "persistent", "persistent_recursive")
# removeWatches / checkWatches WatcherType on the wire (4/5 are 3.9's)
WATCHER_TYPES = {1: "child", 2: "data", 3: "any", 4: "persistent", 5: "persistent_recursive"}
# addWatch mode on the wire
ADD_WATCH_MODES = {0: "persistent", 1: "persistent_recursive"}


class _TreeView(Protocol):
    def exists(self, path: str) -> Stat | None: ...


class _Table:
    """path -> {session_id: mode}, with a count of recursive entries."""

    __slots__ = ("watches", "recursive")

    def __init__(self) -> None:
        self.watches: dict[str, dict[int, int]] = {}
        self.recursive = 0

    def add(self, path: str, sid: int, mode: int) -> None:
        entry = self.watches.setdefault(path, {})
        old = entry.get(sid)
        if old == PERSISTENT_RECURSIVE:
            self.recursive -= 1
        if mode == PERSISTENT_RECURSIVE:
            self.recursive += 1
        entry[sid] = mode

    def discard(self, path: str, sid: int, only_mode: int | None = None) -> bool:
        entry = self.watches.get(path)
        if entry is None or sid not in entry:
            return False
        if only_mode is not None and entry[sid] != only_mode:
            return False
        if entry.pop(sid) == PERSISTENT_RECURSIVE:
            self.recursive -= 1
        if not entry:
            del self.watches[path]
        return True

    def has(self, path: str, sid: int) -> bool:
        entry = self.watches.get(path)
        return entry is not None and sid in entry

    def fire(self, path: str, etype: int, suppress: dict[int, None] | None = None) -> dict[int, None]:
        """Sessions to notify (insertion-ordered), consuming one-shot watches."""
        fired: dict[int, None] = {}
        entry = self.watches.get(path)
        if entry:
            for sid, mode in list(entry.items()):
                if mode == PERSISTENT_RECURSIVE:
                    if etype != EventType.NODE_CHILDREN_CHANGED:
                        fired[sid] = None
                    continue
                fired[sid] = None
                if mode == STANDARD:
                    del entry[sid]
            if not entry:
                del self.watches[path]
        if self.recursive and etype != EventType.NODE_CHILDREN_CHANGED:
            p = path
            while p != "/":
                i = p.rfind("/")
                p = p[:i] if i > 0 else "/"
                anc = self.watches.get(p)
                if anc:
                    for sid, mode in anc.items():
                        if mode == PERSISTENT_RECURSIVE:
                            fired[sid] = None
        if suppress:
            for sid in suppress:
                fired.pop(sid, None)
        return fired


class WatchManager:
    """All watches on one server, by session. Pure: no I/O, no clock."""

    def __init__(self) -> None:
        self._data = _Table()
        self._child = _Table()

    def add(self, session_id: int, path: str, kind: str) -> None:
        """Register a watch; ``kind`` in data, exist, child, persistent, persistent_recursive."""
        if kind in ("data", "exist"):
            self._data.add(path, session_id, STANDARD)
        elif kind == "child":
            self._child.add(path, session_id, STANDARD)
        elif kind == "persistent":
            self._data.add(path, session_id, PERSISTENT)
            self._child.add(path, session_id, PERSISTENT)
        elif kind == "persistent_recursive":
            self._data.add(path, session_id, PERSISTENT_RECURSIVE)
        else:
            raise ValueError(f"unknown watch kind {kind!r}: allowed {', '.join(KINDS)}")

    def empty(self) -> bool:
        """No watch is registered (then no event notifies anyone)."""
        return not self._data.watches and not self._child.watches

    def trigger(self, event: WatchEvent) -> list[tuple[int, WatchEvent]]:
        """Who is notified of ``event`` (and consume their one-shot watches)."""
        t = event.type
        if t == EventType.NODE_CREATED or t == EventType.NODE_DATA_CHANGED:
            fired = self._data.fire(event.path, t)
        elif t == EventType.NODE_DELETED:
            fired = self._data.fire(event.path, t)
            fired.update(self._child.fire(event.path, t, suppress=fired))
        elif t == EventType.NODE_CHILDREN_CHANGED:
            fired = self._child.fire(event.path, t)
        else:
            raise ValueError(f"unknown event type {t}: allowed 1..4")
        return [(sid, event) for sid in fired]

    def trigger_all(self, events: Iterable[WatchEvent]) -> list[tuple[int, WatchEvent]]:
        """``trigger`` for each event of an ApplyResult, in order."""
        out: list[tuple[int, WatchEvent]] = []
        for e in events:
            out.extend(self.trigger(e))
        return out

    def contains(self, session_id: int, path: str, kind: str = "any") -> bool:
        """Does the session watch ``path`` (checkWatches)? ``kind``: data, child, any."""
        if kind in ("data", "exist"):
            return self._data.has(path, session_id)
        if kind == "child":
            return self._child.has(path, session_id)
        if kind == "any":
            return self._data.has(path, session_id) or self._child.has(path, session_id)
        if kind == "persistent":
            return self._data.watches.get(path, {}).get(session_id) == PERSISTENT
        if kind == "persistent_recursive":
            return self._data.watches.get(path, {}).get(session_id) == PERSISTENT_RECURSIVE
        raise ValueError(f"unknown watcher type {kind!r}: allowed data, child, any, persistent, persistent_recursive")

    def remove(self, session_id: int, path: str, kind: str = "any") -> bool:
        """removeWatches: drop the session's watches on ``path``; False if there were none.

        ``kind``: "data" (the data table, including persistent and recursive
        entries, as ZooKeeper 3.8), "child", "any", or (3.9)
        "persistent" / "persistent_recursive" for just that mode. Ints from
        the wire are accepted via ``WATCHER_TYPES``.
        """
        if isinstance(kind, int):
            if kind not in WATCHER_TYPES:
                raise ValueError(f"unknown watcher type {kind}: allowed {sorted(WATCHER_TYPES)}")
            kind = WATCHER_TYPES[kind]
        if kind in ("data", "exist"):
            return self._data.discard(path, session_id)
        if kind == "child":
            return self._child.discard(path, session_id)
        if kind == "any":
            a = self._child.discard(path, session_id)
            b = self._data.discard(path, session_id)
            return a or b
        if kind == "persistent":
            a = self._data.discard(path, session_id, PERSISTENT)
            b = self._child.discard(path, session_id, PERSISTENT)
            return a or b
        if kind == "persistent_recursive":
            return self._data.discard(path, session_id, PERSISTENT_RECURSIVE)
        raise ValueError(f"unknown watcher type {kind!r}: allowed data, child, any, persistent, persistent_recursive")

    def remove_session(self, session_id: int) -> None:
        """Drop every watch of a session (it closed, expired or left this server)."""
        for table in (self._data, self._child):
            for path in [p for p, e in table.watches.items() if session_id in e]:
                table.discard(path, session_id)

    def set_watches(
        self,
        session_id: int,
        rel_zxid: int,
        data_paths: Iterable[str],
        exist_paths: Iterable[str],
        child_paths: Iterable[str],
        persistent: Iterable[str],
        persistent_recursive: Iterable[str],
        tree: _TreeView,
    ) -> list[WatchEvent]:
        """Re-register a reconnecting client's watches (ZooKeeper's DataTree.setWatches).

        Returns the events to deliver to this session now, because the tree
        changed past ``rel_zxid`` (the client's last seen zxid): a data watch
        on a missing node -> NodeDeleted, on a node modified after rel_zxid ->
        NodeDataChanged; an exist watch on a node that now exists ->
        NodeCreated; a child watch on a missing node -> NodeDeleted, on a node
        whose children changed after rel_zxid -> NodeChildrenChanged. Other
        watches are registered. These events carry zxid -1 (as ZooKeeper's).
        """
        out: list[WatchEvent] = []
        for path in data_paths:
            st = tree.exists(path)
            if st is None:
                out.append(WatchEvent(EventType.NODE_DELETED, path, -1))
            elif st.mzxid > rel_zxid:
                out.append(WatchEvent(EventType.NODE_DATA_CHANGED, path, -1))
            else:
                self.add(session_id, path, "data")
        for path in exist_paths:
            if tree.exists(path) is not None:
                out.append(WatchEvent(EventType.NODE_CREATED, path, -1))
            else:
                self.add(session_id, path, "exist")
        for path in child_paths:
            st = tree.exists(path)
            if st is None:
                out.append(WatchEvent(EventType.NODE_DELETED, path, -1))
            elif st.pzxid > rel_zxid:
                out.append(WatchEvent(EventType.NODE_CHILDREN_CHANGED, path, -1))
            else:
                self.add(session_id, path, "child")
        for path in persistent:
            self.add(session_id, path, "persistent")
        for path in persistent_recursive:
            self.add(session_id, path, "persistent_recursive")
        return out

    # ----------------------------------------------------- wchs / wchc / wchp

    def by_session(self) -> dict[int, list[str]]:
        """session id -> sorted watched paths (wchc)."""
        out: dict[int, set[str]] = {}
        for table in (self._data, self._child):
            for path, entry in table.watches.items():
                for sid in entry:
                    out.setdefault(sid, set()).add(path)
        return {sid: sorted(paths) for sid, paths in sorted(out.items())}

    def by_path(self) -> dict[str, list[int]]:
        """path -> sorted session ids watching it (wchp)."""
        out: dict[str, set[int]] = {}
        for table in (self._data, self._child):
            for path, entry in table.watches.items():
                out.setdefault(path, set()).update(entry)
        return {p: sorted(s) for p, s in sorted(out.items())}

    def summary(self) -> tuple[int, int, int]:
        """(sessions with watches, watched paths, total watches) for wchs."""
        sessions: set[int] = set()
        paths: set[str] = set()
        total = 0
        for table in (self._data, self._child):
            for path, entry in table.watches.items():
                paths.add(path)
                sessions.update(entry)
                total += len(entry)
        return len(sessions), len(paths), total

    def count(self) -> int:
        """Total number of watch entries (mntr zk_watch_count)."""
        return self.summary()[2]
