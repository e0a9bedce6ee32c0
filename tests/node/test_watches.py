"""Watch registration and triggering with ZooKeeper 3.8's rules."""

from __future__ import annotations

import pytest

from node.tree import (
    OPEN_ACL_UNSAFE,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteOp,
    EventType,
    SetDataOp,
    Txn,
    WatchEvent,
)
from node.watches import WatchManager

C, D, DC, CC = (
    EventType.NODE_CREATED,
    EventType.NODE_DELETED,
    EventType.NODE_DATA_CHANGED,
    EventType.NODE_CHILDREN_CHANGED,
)


def ev(t: int, path: str, zxid: int = 9) -> WatchEvent:
    return WatchEvent(t, path, zxid)


def fire(w: WatchManager, t: int, path: str) -> list[int]:
    return [sid for sid, _ in w.trigger(ev(t, path))]


def test_one_shot_data_exist_and_child_watches() -> None:
    w = WatchManager()
    w.add(1, "/a", "data")
    w.add(2, "/a", "exist")
    w.add(3, "/a", "child")
    assert fire(w, DC, "/a") == [1, 2]
    assert fire(w, DC, "/a") == []  # consumed
    assert fire(w, CC, "/a") == [3]
    assert fire(w, CC, "/a") == []
    assert w.summary() == (0, 0, 0)


def test_created_fires_data_and_exist_watches_on_the_path_only() -> None:
    w = WatchManager()
    w.add(1, "/a", "exist")
    w.add(2, "/a", "child")
    w.add(3, "/", "child")
    assert fire(w, C, "/a") == [1]
    assert fire(w, CC, "/") == [3]
    assert fire(w, CC, "/a") == [2]


def test_deleted_notifies_each_session_once() -> None:
    w = WatchManager()
    w.add(1, "/a", "data")
    w.add(1, "/a", "child")
    w.add(2, "/a", "child")
    out = w.trigger(ev(D, "/a"))
    assert out == [(1, ev(D, "/a")), (2, ev(D, "/a"))]
    assert w.summary() == (0, 0, 0)


def test_persistent_watch_stays_and_sees_children_changes() -> None:
    w = WatchManager()
    w.add(1, "/a", "persistent")
    for t, p in [(DC, "/a"), (CC, "/a"), (C, "/a"), (D, "/a"), (DC, "/a")]:
        assert fire(w, t, p) == [1]
    assert fire(w, DC, "/a/b") == []
    assert w.contains(1, "/a", "persistent") and w.contains(1, "/a", "child")


def test_persistent_recursive_fires_for_descendants_except_children_changed() -> None:
    w = WatchManager()
    w.add(1, "/a", "persistent_recursive")
    w.add(2, "/", "persistent_recursive")
    assert fire(w, C, "/a/b/c") == [1, 2]
    assert fire(w, DC, "/a") == [1, 2]
    assert fire(w, D, "/ab") == [2]  # /ab is not under /a
    assert fire(w, CC, "/a") == []
    assert fire(w, DC, "/a/b") == [1, 2]  # still there


def test_mode_of_last_add_wins_as_in_zookeeper() -> None:
    w = WatchManager()
    w.add(1, "/a", "persistent")
    w.add(1, "/a", "data")  # now a one-shot data watch (child table still persistent)
    assert fire(w, DC, "/a") == [1]
    assert fire(w, DC, "/a") == []
    assert fire(w, CC, "/a") == [1]
    assert fire(w, CC, "/a") == [1]


def test_remove_by_type() -> None:
    w = WatchManager()
    w.add(1, "/a", "data")
    w.add(1, "/a", "child")
    assert w.remove(1, "/a", "child")
    assert not w.remove(1, "/a", "child")
    assert w.contains(1, "/a", "data")
    assert w.remove(1, "/a", 3)  # any, as a wire WatcherType
    assert not w.remove(1, "/a", "any")
    w.add(2, "/p", "persistent_recursive")
    assert not w.remove(2, "/p", "persistent")
    assert w.remove(2, "/p", "persistent_recursive")
    assert fire(w, DC, "/p/x") == []
    with pytest.raises(ValueError):
        w.remove(1, "/a", "bogus")
    with pytest.raises(ValueError):
        w.add(1, "/a", "bogus")


def test_remove_session_and_dumps() -> None:
    w = WatchManager()
    w.add(1, "/a", "data")
    w.add(1, "/b", "child")
    w.add(2, "/a", "child")
    w.add(2, "/r", "persistent_recursive")
    assert w.by_session() == {1: ["/a", "/b"], 2: ["/a", "/r"]}
    assert w.by_path() == {"/a": [1, 2], "/b": [1], "/r": [2]}
    assert w.summary() == (2, 3, 4) and w.count() == 4
    w.remove_session(2)
    assert w.by_session() == {1: ["/a", "/b"]}
    assert fire(w, DC, "/r/x") == []


def _tree_with(ops) -> DataTree:
    t = DataTree()
    t.apply(Txn(1, 0, 0, (), CreateSessionOp(5, 4000, b"x" * 16)))
    for i, op in enumerate(ops, start=2):
        assert t.apply(Txn(i, 0, 5, (), op)).err == 0
    return t


def test_set_watches_reports_what_changed_since_rel_zxid() -> None:
    t = _tree_with(
        [
            CreateOp("/old", b"", OPEN_ACL_UNSAFE),  # zxid 2
            CreateOp("/kids", b"", OPEN_ACL_UNSAFE),  # 3
            SetDataOp("/old", b"new"),  # 4
            CreateOp("/kids/k", b"", OPEN_ACL_UNSAFE),  # 5
            CreateOp("/born", b"", OPEN_ACL_UNSAFE),  # 6
            CreateOp("/same", b"", OPEN_ACL_UNSAFE),  # 7
        ]
    )
    w = WatchManager()
    out = w.set_watches(
        9, 3, ["/old", "/gone", "/same"], ["/born", "/notyet"], ["/kids", "/gone2", "/same"], ["/p"], ["/r"], t
    )
    # /same was created at 7 > 3, so its data and children count as changed too
    assert out == [
        WatchEvent(DC, "/old", -1),
        WatchEvent(D, "/gone", -1),
        WatchEvent(DC, "/same", -1),
        WatchEvent(C, "/born", -1),
        WatchEvent(CC, "/kids", -1),
        WatchEvent(D, "/gone2", -1),
        WatchEvent(CC, "/same", -1),
    ]
    assert w.by_session() == {9: ["/notyet", "/p", "/r"]}
    # with rel_zxid 7 nothing changed after it: the watches register instead
    w2 = WatchManager()
    assert w2.set_watches(9, 7, ["/same"], ["/notyet"], ["/same"], [], [], t) == []
    assert w2.by_session() == {9: ["/notyet", "/same"]}


def test_tree_events_drive_watches_end_to_end() -> None:
    t = _tree_with([CreateOp("/a", b"", OPEN_ACL_UNSAFE)])
    w = WatchManager()
    w.add(1, "/a/b", "exist")
    w.add(2, "/a", "child")
    w.add(3, "/a", "data")
    r = t.apply(Txn(10, 0, 5, (), CreateOp("/a/b", b"", OPEN_ACL_UNSAFE)))
    assert w.trigger_all(r.events) == [(1, WatchEvent(C, "/a/b", 10)), (2, WatchEvent(CC, "/a", 10))]
    w.add(1, "/a/b", "data")
    r = t.apply(Txn(11, 0, 5, (), DeleteOp("/a/b")))
    assert w.trigger_all(r.events) == [(1, WatchEvent(D, "/a/b", 11))]
    assert w.by_session() == {3: ["/a"]}
