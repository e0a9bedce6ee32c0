"""The data tree against ZooKeeper 3.8's semantics (values checked on a real 3.8 server)."""

from __future__ import annotations

import pytest

from node.errors import Err, ZkError
from node.tree import (
    ACL,
    CONTAINER,
    EPHEMERAL,
    EPHEMERAL_SEQUENTIAL,
    OPEN_ACL_UNSAFE,
    PERSISTENT_SEQUENTIAL,
    PERSISTENT_WITH_TTL,
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteContainerOp,
    DeleteOp,
    ErrorOp,
    EventType,
    MultiOp,
    Perm,
    SetACLOp,
    SetDataOp,
    Txn,
    WatchEvent,
    check_acl,
    decode_txn,
    digest_id,
    encode_txn,
    path_error,
)

SID = 0x100000000000001
OTHER = 0x100000000000002
IP = ("ip", "127.0.0.1")


class Driver:
    """Applies ops with increasing zxids and a fake clock (1000 + zxid ms)."""

    def __init__(self) -> None:
        self.tree = DataTree()
        self.zxid = 0
        for sid in (SID, OTHER):
            self.apply(CreateSessionOp(sid, 10_000, b"p" * 16), session=0)

    def apply(self, op, session=SID, idents=(IP,), time_ms=None):
        self.zxid += 1
        return self.tree.apply(Txn(self.zxid, 1000 + self.zxid if time_ms is None else time_ms, session, idents, op))

    def ok(self, op, **kw):
        r = self.apply(op, **kw)
        assert r.err == Err.OK, f"{op} failed with {Err(r.err).name}"
        return r.value

    def err(self, op, **kw) -> int:
        r = self.apply(op, **kw)
        assert r.events == [] or r.err == Err.OK
        return r.err

    def create(self, path, data=b"", flags=0, acl=OPEN_ACL_UNSAFE, **kw):
        return self.ok(CreateOp(path, data, acl, flags), **kw)


@pytest.fixture
def d() -> Driver:
    return Driver()


# ----------------------------------------------------------------- fresh tree


def test_fresh_tree_matches_zookeeper(d: Driver) -> None:
    t = DataTree()
    root = t.exists("/")
    assert (root.cversion, root.num_children, root.pzxid, root.czxid) == (-1, 1, 0, 0)
    assert t.get_children("/")[0] == ["zookeeper"]
    assert t.get_children("/zookeeper")[0] == ["config", "quota"]
    assert t.exists("/zookeeper").cversion == -2
    acl, st = t.get_acl("/zookeeper/config")
    assert acl == [ACL(Perm.READ, "world", "anyone")] and st.aversion == -1
    assert t.node_count == 4 and t.zk_node_count == 5 and t.last_zxid == 0


# ----------------------------------------------------------------- stats


def test_create_stat_and_parent_bookkeeping(d: Driver) -> None:
    path, st = d.create("/a", b"hello")
    assert path == "/a"
    assert (st.czxid, st.mzxid, st.pzxid) == (d.zxid, d.zxid, d.zxid)
    assert (st.ctime, st.mtime) == (1000 + d.zxid, 1000 + d.zxid)
    assert (st.version, st.cversion, st.aversion, st.ephemeral_owner, st.data_length, st.num_children) == (
        0,
        0,
        0,
        0,
        5,
        0,
    )
    root = d.tree.exists("/")
    assert (root.cversion, root.pzxid, root.num_children) == (0, d.zxid, 2)
    assert d.tree.last_zxid == d.zxid


def test_cversion_counts_creates_and_deletes_but_sequence_counts_creates() -> None:
    # Real ZooKeeper 3.8: /p/a0000000000, delete, /p/a0000000001, create+delete /p/x, /p/a0000000003;
    # reported cversion after each step 1, 2, 3, 4, 5, 6.
    d = Driver()
    d.create("/p")
    seen = []
    p1, _ = d.create("/p/a", flags=PERSISTENT_SEQUENTIAL)
    seen.append(d.tree.exists("/p").cversion)
    d.ok(DeleteOp(p1))
    seen.append(d.tree.exists("/p").cversion)
    p2, _ = d.create("/p/a", flags=PERSISTENT_SEQUENTIAL)
    seen.append(d.tree.exists("/p").cversion)
    d.create("/p/x")
    seen.append(d.tree.exists("/p").cversion)
    d.ok(DeleteOp("/p/x"))
    seen.append(d.tree.exists("/p").cversion)
    p3, _ = d.create("/p/a", flags=PERSISTENT_SEQUENTIAL)
    seen.append(d.tree.exists("/p").cversion)
    assert (p1, p2, p3) == ("/p/a0000000000", "/p/a0000000001", "/p/a0000000003")
    assert seen == [1, 2, 3, 4, 5, 6]
    assert d.tree.exists("/p").pzxid == d.zxid


def test_sequential_under_root_and_trailing_slash(d: Driver) -> None:
    assert d.create("/q", flags=PERSISTENT_SEQUENTIAL)[0] == "/q0000000000"
    d.create("/dir")
    assert d.create("/dir/", flags=PERSISTENT_SEQUENTIAL)[0] == "/dir/0000000000"
    assert d.err(CreateOp("/dir/", b"", OPEN_ACL_UNSAFE, 0)) == Err.BAD_ARGUMENTS


def test_set_data_and_versions(d: Driver) -> None:
    d.create("/a", b"1")
    st = d.ok(SetDataOp("/a", b"22", -1))
    assert (st.version, st.mzxid, st.data_length, st.czxid < st.mzxid) == (1, d.zxid, 2, True)
    assert d.err(SetDataOp("/a", b"x", 0)) == Err.BAD_VERSION
    assert d.ok(SetDataOp("/a", b"x", 1)).version == 2
    assert d.tree.get_data("/a", [IP])[0] == b"x"
    assert d.err(DeleteOp("/a", 1)) == Err.BAD_VERSION
    d.ok(DeleteOp("/a", 2))
    assert d.tree.exists("/a") is None


def test_set_acl_bumps_aversion_only(d: Driver) -> None:
    d.create("/a")
    st = d.ok(SetACLOp("/a", (ACL(Perm.READ | Perm.ADMIN, "world", "anyone"),), -1))
    assert (st.aversion, st.version, st.mzxid) == (1, 0, d.zxid - 1)
    assert d.err(SetACLOp("/a", OPEN_ACL_UNSAFE, 0)) == Err.BAD_VERSION
    assert d.err(SetDataOp("/a", b"x")) == Err.NO_AUTH


def test_failed_write_consumes_zxid_and_changes_nothing(d: Driver) -> None:
    before = d.tree.digest()[1:]
    r = d.apply(DeleteOp("/missing"))
    assert r.err == Err.NO_NODE and r.events == []
    assert d.tree.last_zxid == d.zxid and d.tree.digest()[1:] == before
    assert d.apply(ErrorOp(Err.SESSION_MOVED)).err == Err.SESSION_MOVED


# ----------------------------------------------------------------- errors & precedence


def test_delete_precedence(d: Driver) -> None:
    d.create("/locked", acl=(ACL(Perm.READ | Perm.CREATE, "world", "anyone"),))
    d.create("/locked/c")
    d.create("/open")
    d.create("/open/c")
    assert d.err(DeleteOp("/")) == Err.BAD_ARGUMENTS
    assert d.err(DeleteOp("/zookeeper")) == Err.BAD_ARGUMENTS
    assert d.err(DeleteOp("nope")) == Err.BAD_ARGUMENTS
    assert d.err(DeleteOp("/nope/x")) == Err.NO_NODE  # parent missing
    assert d.err(DeleteOp("/locked/missing")) == Err.NO_AUTH  # NoAuth beats NoNode (ZooKeeper)
    assert d.err(DeleteOp("/locked/c", 5)) == Err.NO_AUTH
    assert d.err(DeleteOp("/open/missing")) == Err.NO_NODE
    assert d.err(DeleteOp("/open", 7)) == Err.BAD_VERSION  # BadVersion beats NotEmpty
    assert d.err(DeleteOp("/open")) == Err.NOT_EMPTY


def test_create_precedence(d: Driver) -> None:
    d.create("/ro", acl=(ACL(Perm.READ, "world", "anyone"),))
    d.create("/e", flags=EPHEMERAL)
    assert d.err(CreateOp("/x", b"", OPEN_ACL_UNSAFE, 9)) == Err.BAD_ARGUMENTS
    assert d.err(CreateOp("noslash", b"", OPEN_ACL_UNSAFE, 0)) == Err.BAD_ARGUMENTS
    assert d.err(CreateOp("/x", b"", (), 0)) == Err.INVALID_ACL
    assert d.err(CreateOp("/nonex/a/", b"", OPEN_ACL_UNSAFE, 0)) == Err.NO_NODE  # parent lookup first (ZooKeeper)
    assert d.err(CreateOp("/nonex/a", b"", (), 0)) == Err.INVALID_ACL  # ACL before parent
    assert d.err(CreateOp("/ro/a", b"", OPEN_ACL_UNSAFE, 0)) == Err.NO_AUTH
    assert d.err(CreateOp("/ro", b"", OPEN_ACL_UNSAFE, 0)) == Err.NODE_EXISTS
    assert d.err(CreateOp("/a/../b", b"", OPEN_ACL_UNSAFE, 0)) == Err.NO_NODE
    assert d.err(CreateOp("/a.", b"", OPEN_ACL_UNSAFE, 0)) == Err.OK
    assert d.err(CreateOp("/..", b"", OPEN_ACL_UNSAFE, 0)) == Err.BAD_ARGUMENTS
    assert d.err(CreateOp("/e/child", b"", OPEN_ACL_UNSAFE, 0)) == Err.NO_CHILDREN_FOR_EPHEMERALS
    assert d.err(CreateOp("/e", b"", OPEN_ACL_UNSAFE, 0)) == Err.NODE_EXISTS  # exists beats ephemeral parent
    assert d.err(CreateOp("/", b"", OPEN_ACL_UNSAFE, 0)) == Err.NODE_EXISTS


def test_set_data_precedence(d: Driver) -> None:
    d.create("/ro", acl=(ACL(Perm.READ, "world", "anyone"),))
    assert d.err(SetDataOp("/bad/", b"")) == Err.BAD_ARGUMENTS
    assert d.err(SetDataOp("/missing", b"")) == Err.NO_NODE
    assert d.err(SetDataOp("/ro", b"", 5)) == Err.NO_AUTH  # NoAuth beats BadVersion (ZooKeeper)
    assert d.err(SetACLOp("/ro", (), 0)) == Err.INVALID_ACL
    assert d.err(SetACLOp("/missing", OPEN_ACL_UNSAFE, 0)) == Err.NO_NODE
    assert d.err(SetACLOp("/ro", OPEN_ACL_UNSAFE, 0)) == Err.NO_AUTH


@pytest.mark.parametrize(
    "path,ok",
    [
        ("/", True),
        ("/a", True),
        ("/a/b.c", True),
        ("/a/.b", True),
        ("/a...", True),
        ("/é", True),
        ("", False),
        ("a", False),
        ("/a/", False),
        ("//a", False),
        ("/a//b", False),
        ("/a/./b", False),
        ("/a/.", False),
        ("/a/..", False),
        ("/a\0b", False),
        ("/a\x01", False),
        ("/a\x7f", False),
        ("/a\u009f", False),
        ("/a\ud800", False),
        ("/a\ue000", False),
        ("/a\ufff0", False),
        ("/a\U0001f600", False),
    ],
)
def test_path_rules(path: str, ok: bool) -> None:
    assert (path_error(path) is None) is ok


def test_writes_from_unknown_session_are_session_expired(d: Driver) -> None:
    assert d.err(CreateOp("/x", b"", OPEN_ACL_UNSAFE, 0), session=0xDEAD) == Err.SESSION_EXPIRED
    r = d.apply(MultiOp((CreateOp("/x", b"", OPEN_ACL_UNSAFE, 0),)), session=0xDEAD)
    assert r.value == [(Err.SESSION_EXPIRED, None)]
    assert d.err(CreateOp("/x", b"", OPEN_ACL_UNSAFE, EPHEMERAL), session=0) == Err.SESSION_EXPIRED
    assert d.err(CreateOp("/x", b"", OPEN_ACL_UNSAFE, 0), session=0) == Err.OK  # system session


# ----------------------------------------------------------------- reads


def test_reads_raise_no_node_then_no_auth(d: Driver) -> None:
    d.create("/secret", b"s", acl=(ACL(Perm.WRITE, "world", "anyone"),))
    with pytest.raises(ZkError) as e:
        d.tree.get_data("/missing", [IP])
    assert e.value.code == Err.NO_NODE
    for read in (d.tree.get_data, d.tree.get_children, d.tree.count_all_children, d.tree.get_acl):
        with pytest.raises(ZkError) as e:
            read("/secret", [IP])
        assert e.value.code == Err.NO_AUTH
    assert d.tree.exists("/secret").data_length == 1  # exists has no ACL check
    with pytest.raises(ZkError) as e:
        d.tree.exists("/a\0")
    assert e.value.code == Err.BAD_ARGUMENTS


def test_get_acl_masks_digest_without_admin(d: Driver) -> None:
    u1 = ("digest", digest_id("u1", "p1"))
    d.create(
        "/r", acl=(ACL(Perm.READ, "digest", u1[1]), ACL(Perm.ADMIN, "digest", digest_id("u2", "p2"))), idents=(IP, u1)
    )
    acl, _ = d.tree.get_acl("/r", [IP, u1])
    assert [a.id for a in acl] == ["u1:x", "u2:x"]
    u2 = ("digest", digest_id("u2", "p2"))
    assert d.tree.get_acl("/r", [u2])[0][0].id == u1[1]
    assert d.tree.get_acl("/r")[0][0].id == u1[1]  # internal use: unmasked


def test_count_all_children_and_ephemerals(d: Driver) -> None:
    d.create("/a")
    d.create("/a/b")
    d.create("/a/b/c", flags=EPHEMERAL)
    d.create("/a/d", flags=EPHEMERAL, session=OTHER)
    assert d.tree.count_all_children("/a") == 3
    assert d.tree.count_all_children("/") == d.tree.node_count - 1
    assert d.tree.get_ephemerals(SID, "/") == ["/a/b/c"]
    assert d.tree.get_ephemerals(None, "/a") == ["/a/b/c", "/a/d"]
    assert d.tree.get_ephemerals(OTHER, "/a/b") == []
    assert d.tree.ephemerals_by_session == {SID: ["/a/b/c"], OTHER: ["/a/d"]}
    assert d.tree.exists("/a/d").ephemeral_owner == OTHER


# ----------------------------------------------------------------- ACLs


def test_digest_id_matches_zookeeper() -> None:
    # value printed by a real ZooKeeper 3.8 for addauth digest u1:p1 + auth ACL
    assert digest_id("u1", "p1") == "u1:fpT/y03U+EjItKZOSLGvjnJlyng="


def test_auth_scheme_expands_to_authenticated_ids(d: Driver) -> None:
    assert d.err(CreateOp("/x", b"", (ACL(31, "auth", ""),), 0)) == Err.INVALID_ACL  # only an ip identity
    u1 = ("digest", digest_id("u1", "p1"))
    u2 = ("digest", digest_id("u2", "p2"))
    d.create("/x", acl=(ACL(Perm.READ, "auth", ""),), idents=(IP, u1, u2))
    acl, _ = d.tree.get_acl("/x")
    assert acl == [ACL(Perm.READ, "digest", u1[1]), ACL(Perm.READ, "digest", u2[1])]
    assert d.tree.get_data("/x", [u2])[0] == b""
    with pytest.raises(ZkError):
        d.tree.get_data("/x", [IP])


@pytest.mark.parametrize(
    "acl",
    [
        ACL(31, "world", "someone"),
        ACL(31, "ip", "127.0.0.0/33"),
        ACL(31, "ip", "nohost"),
        ACL(31, "digest", "nocolon"),
        ACL(31, "bogus", "x"),
    ],
)
def test_invalid_acls(d: Driver, acl: ACL) -> None:
    assert d.err(CreateOp("/x", b"", (acl,), 0)) == Err.INVALID_ACL


def test_ip_acl_with_cidr_and_super(d: Driver) -> None:
    d.create("/net", acl=(ACL(Perm.ALL, "ip", "10.1.0.0/16"),))
    assert d.tree.get_data("/net", [("ip", "10.1.200.3")])[0] == b""
    with pytest.raises(ZkError):
        d.tree.get_data("/net", [("ip", "10.2.0.1")])
    with pytest.raises(ZkError):
        d.tree.get_data("/net", [("ip", "::1")])
    assert d.tree.get_data("/net", [("super", "")])[0] == b""
    assert check_acl([], Perm.ADMIN, [])  # an empty ACL allows everything (ZooKeeper)


def test_acl_perms_per_operation(d: Driver) -> None:
    only = lambda p: (ACL(p, "world", "anyone"),)  # noqa: E731
    d.create("/c", acl=only(Perm.CREATE))
    d.create("/c/x")
    assert d.err(DeleteOp("/c/x")) == Err.NO_AUTH  # delete needs DELETE on the parent
    d.create("/del", acl=only(Perm.DELETE | Perm.CREATE))
    d.create("/del/x", acl=only(0))
    d.ok(DeleteOp("/del/x"))  # ... and nothing on the node itself
    d.create("/w", acl=only(Perm.WRITE))
    d.ok(SetDataOp("/w", b"1"))
    assert d.err(CheckOp("/w", -1)) == Err.NO_AUTH  # check needs READ
    with pytest.raises(ZkError):
        d.tree.get_children("/w", [IP])


# ----------------------------------------------------------------- multi


def test_multi_all_or_nothing(d: Driver) -> None:
    d.create("/base", b"v0")
    before = d.tree.digest()[1:]
    r = d.apply(
        MultiOp(
            (
                CreateOp("/m1", b"", OPEN_ACL_UNSAFE, 0),
                CreateOp("/m1/a", b"", OPEN_ACL_UNSAFE, PERSISTENT_SEQUENTIAL),
                SetDataOp("/base", b"v1", -1),
                DeleteOp("/nonexist"),
                CreateOp("/m2", b"", OPEN_ACL_UNSAFE, 0),
            )
        )
    )
    assert [e for e, _ in r.value] == [Err.OK, Err.OK, Err.OK, Err.NO_NODE, Err.RUNTIME_INCONSISTENCY]
    assert r.err == Err.NO_NODE and r.events == []
    assert d.tree.digest()[1:] == before
    assert d.tree.last_zxid == d.zxid


def test_multi_success_shares_zxid_and_sees_own_writes(d: Driver) -> None:
    r = d.apply(
        MultiOp(
            (
                CreateOp("/m", b"", OPEN_ACL_UNSAFE, 0),
                CreateOp("/m/s", b"", OPEN_ACL_UNSAFE, PERSISTENT_SEQUENTIAL),
                CreateOp("/m/s", b"", OPEN_ACL_UNSAFE, PERSISTENT_SEQUENTIAL),
                SetDataOp("/m", b"x", 0),
                CheckOp("/m", 1),
                DeleteOp("/m/s0000000000", 0),
            )
        )
    )
    assert r.err == Err.OK
    assert r.value[1][1][0] == "/m/s0000000000" and r.value[2][1][0] == "/m/s0000000001"
    assert r.value[3][1].version == 1
    st = d.tree.exists("/m")
    assert (st.czxid, st.mzxid, st.pzxid, st.num_children, st.cversion) == (d.zxid, d.zxid, d.zxid, 1, 3)
    assert [e.type for e in r.events].count(EventType.NODE_CREATED) == 3
    assert r.events[-2] == WatchEvent(EventType.NODE_DELETED, "/m/s0000000000", d.zxid)


def test_multi_rollback_restores_sequence_and_ephemerals(d: Driver) -> None:
    d.create("/p")
    r = d.apply(MultiOp((CreateOp("/p/e", b"", OPEN_ACL_UNSAFE, EPHEMERAL_SEQUENTIAL), CheckOp("/p", 99))))
    assert r.err == Err.BAD_VERSION
    assert d.tree.get_ephemerals(SID) == []
    assert d.create("/p/e", flags=EPHEMERAL_SEQUENTIAL)[0] == "/p/e0000000000"
    assert d.tree.exists("/p").cversion == 1


def test_multi_refuses_non_multi_ops(d: Driver) -> None:
    r = d.apply(MultiOp((CreateOp("/a", b"", OPEN_ACL_UNSAFE, 0), SetACLOp("/a", OPEN_ACL_UNSAFE, -1))))
    assert [e for e, _ in r.value] == [Err.OK, Err.BAD_ARGUMENTS]
    assert d.tree.exists("/a") is None


# ----------------------------------------------------------------- sessions, containers, TTL


def test_close_session_deletes_its_ephemerals_with_events(d: Driver) -> None:
    d.create("/a")
    d.create("/a/e1", flags=EPHEMERAL)
    d.create("/e2", flags=EPHEMERAL)
    d.create("/o", flags=EPHEMERAL, session=OTHER)
    r = d.apply(CloseSessionOp(SID), session=SID)
    assert r.value == ["/a/e1", "/e2"]
    assert d.tree.exists("/a/e1") is None and d.tree.exists("/e2") is None and d.tree.exists("/o") is not None
    assert SID not in d.tree.sessions
    assert WatchEvent(EventType.NODE_DELETED, "/a/e1", d.zxid) in r.events
    assert WatchEvent(EventType.NODE_CHILDREN_CHANGED, "/a", d.zxid) in r.events
    assert d.err(CreateOp("/late", b"", OPEN_ACL_UNSAFE, 0)) == Err.SESSION_EXPIRED


def test_container_removed_only_after_having_had_a_child(d: Driver) -> None:
    _, st = d.ok(CreateOp("/c", b"", OPEN_ACL_UNSAFE, CONTAINER, -1, "createContainer"))
    assert st.ephemeral_owner == 0  # clients see 0 for containers
    assert d.tree.expired_containers_and_ttls(10**12) == []
    d.create("/c/x")
    assert d.tree.expired_containers_and_ttls(10**12) == []
    d.ok(DeleteOp("/c/x"))
    assert d.tree.expired_containers_and_ttls(0) == ["/c"]
    d.create("/c/y")  # a child came back before the cleanup txn
    assert d.err(DeleteContainerOp("/c"), session=0) == Err.NOT_EMPTY
    d.ok(DeleteOp("/c/y"))
    d.ok(DeleteContainerOp("/c"), session=0)
    assert d.tree.exists("/c") is None
    d.create("/plain")
    assert d.err(DeleteContainerOp("/plain"), session=0) == Err.BAD_VERSION


def test_ttl_nodes(d: Driver) -> None:
    assert d.err(CreateOp("/t", b"", OPEN_ACL_UNSAFE, PERSISTENT_WITH_TTL, -1, "createTTL")) == Err.BAD_ARGUMENTS
    assert d.err(CreateOp("/t", b"", OPEN_ACL_UNSAFE, 0, 100, "createTTL")) == Err.BAD_ARGUMENTS
    assert d.err(CreateOp("/t", b"", OPEN_ACL_UNSAFE, PERSISTENT_WITH_TTL, 0, "createTTL")) == Err.BAD_ARGUMENTS
    _, st = d.ok(CreateOp("/t", b"", OPEN_ACL_UNSAFE, PERSISTENT_WITH_TTL, 500, "createTTL"), time_ms=10_000)
    assert st.ephemeral_owner == 0
    assert d.tree.expired_containers_and_ttls(10_500) == []
    assert d.tree.expired_containers_and_ttls(10_501) == ["/t"]
    assert d.err(DeleteContainerOp("/t"), session=0, time_ms=10_400) == Err.BAD_VERSION  # not expired yet
    d.ok(SetDataOp("/t", b"x"), time_ms=10_450)  # touching it restarts the TTL
    assert d.tree.expired_containers_and_ttls(10_600) == []
    d.create("/t/kid", time_ms=20_000)
    assert d.tree.expired_containers_and_ttls(99_999) == []
    d.ok(DeleteOp("/t/kid"))
    d.ok(DeleteContainerOp("/t"), session=0, time_ms=99_999)
    assert d.tree.exists("/t") is None


# ----------------------------------------------------------------- encoding


def test_txn_encoding_round_trips_every_op() -> None:
    acl = (ACL(31, "digest", "u:h"), ACL(1, "ip", "10.0.0.0/8"))
    ops = [
        CreateOp("/é/x", b"\x00\xff", acl, 6, 1234, "createTTL"),
        DeleteOp("/a", 3),
        SetDataOp("/a", b"", -1),
        SetACLOp("/a", acl, 2),
        CheckOp("/a", 7),
        MultiOp((CreateOp("/m", b"d", acl), CheckOp("/m", 0), MultiOp(()))),
        CreateSessionOp(-5, 4000, b"x" * 16),
        CloseSessionOp(1 << 62),
        DeleteContainerOp("/c"),
        ErrorOp(-112),
    ]
    for op in ops:
        txn = Txn(1 << 40, 1_700_000_000_000, -(1 << 63), (("ip", "::1"), ("digest", "u:h")), op)
        assert decode_txn(encode_txn(txn)) == txn


def test_set_data_fast_encoding_is_the_general_encoding() -> None:
    """encode_txn writes a plain setData in one join: byte for byte what the general Writer writes."""
    from node.tree.codec import _TXN_HEAD, Writer, _encode_op

    for op in (SetDataOp("/é/x", b"\x00\xff" * 50, 7), SetDataOp("/a", b"", -1), SetDataOp("/n", None, 0)):
        txn = Txn(1 << 40, 1_700_000_000_000, -(1 << 63), (), op)
        w = Writer()
        w.raw(_TXN_HEAD.pack(txn.zxid, txn.time_ms, txn.session_id, 0))
        _encode_op(w, op)
        assert encode_txn(txn) == w.getvalue()
        assert decode_txn(encode_txn(txn)) == txn


def test_decode_refuses_garbage() -> None:
    blob = encode_txn(Txn(1, 2, 3, (), SetDataOp("/a", b"x", -1)))
    for bad in (blob[:-1], blob + b"\x00", b"", b"\xff" * 40):
        with pytest.raises(ValueError):
            decode_txn(bad)


def test_snapshot_round_trip_preserves_everything(d: Driver) -> None:
    d.create("/a", b"1", acl=(ACL(Perm.READ, "ip", "1.2.3.4"), ACL(31, "world", "anyone")))
    d.create("/a/e", flags=EPHEMERAL)
    d.ok(CreateOp("/c", b"", OPEN_ACL_UNSAFE, CONTAINER, -1, "createContainer"))
    d.ok(CreateOp("/t", b"", OPEN_ACL_UNSAFE, PERSISTENT_WITH_TTL, 5, "createTTL"))
    copy = DataTree.deserialize(d.tree.serialize())
    assert copy.digest() == d.tree.digest()
    assert copy.get_ephemerals(SID) == ["/a/e"]
    assert copy.expired_containers_and_ttls(10**12) == ["/t"]
    with pytest.raises(ValueError):
        DataTree.deserialize(d.tree.serialize()[:-3])
    with pytest.raises(ValueError):
        DataTree.deserialize(b"nonsense")


def test_null_data_is_kept_apart_from_empty(d: Driver) -> None:
    d.create("/null", None)
    assert d.tree.get_data("/null", [IP]) == (None, d.tree.exists("/null"))
    assert d.tree.exists("/null").data_length == 0
    d.ok(SetDataOp("/null", b""))
    assert d.tree.get_data("/null", [IP])[0] == b""
    d.ok(SetDataOp("/null", None))
    assert d.tree.get_data("/null", [IP])[0] is None
    copy = DataTree.deserialize(d.tree.serialize())
    assert copy.get_data("/null", [])[0] is None
    txn = Txn(5, 6, 7, (), CreateOp("/n", None, OPEN_ACL_UNSAFE))
    assert decode_txn(encode_txn(txn)).op.data is None


# ----------------------------------------------------------------- against Apache ZooKeeper


def _random_session(hosts: str, seed: int, steps: int) -> list:
    """A seeded random mix of CRUD, ACL, auth and multi calls through kazoo; returns the transcript.

    Zxids and times differ between servers, so Stats are compared by their
    version counters, sizes and whether the node is ephemeral.
    """
    import random

    from kazoo.client import KazooClient
    from kazoo.exceptions import KazooException
    from kazoo.security import make_acl, make_digest_acl

    def norm(v):
        if hasattr(v, "czxid"):
            return (v.version, v.cversion, v.aversion, v.dataLength, v.numChildren, v.ephemeralOwner != 0)
        if isinstance(v, (tuple, list)):
            return [norm(x) for x in v]
        if isinstance(v, Exception):
            return type(v).__name__
        return v

    rng = random.Random(seed)
    owner = KazooClient(hosts=hosts, timeout=10)
    other = KazooClient(hosts=hosts, timeout=10)
    clients = [owner, other]
    for c in clients:
        c.start(timeout=15)
    owner.add_auth("digest", "u1:p1")
    base = f"/differential{seed}"
    acls = [
        None,
        [make_acl("world", "anyone", read=True)],
        [make_acl("world", "anyone", create=True, read=True)],
        [make_digest_acl("u1", "p1", all=True)],
        [make_acl("auth", "", all=True)],
        [make_acl("world", "anyone", write=True, delete=True, create=True)],
        [make_acl("ip", "127.0.0.1", all=True)],
    ]
    paths = [base]
    out: list = []

    def rec(tag, fn, *args, **kwargs):
        # called at once with the step's values as arguments (no closure
        # over the loop's variables)
        try:
            out.append((tag, "ok", norm(fn(*args, **kwargs))))
        except KazooException as e:
            out.append((tag, type(e).__name__))

    def sorted_children(c, p):
        return sorted(c.get_children(p))

    try:
        rec("base", owner.create, base)
        for _ in range(steps):
            c = rng.choice([owner, owner, other])
            who = "owner" if c is owner else "other"
            p = rng.choice(paths)
            op = rng.choice(
                ["create", "create", "delete", "set", "get", "children", "acl", "setacl", "multi", "exists"]
            )
            if op == "create":
                child, eph, seq, acl = (
                    p + "/" + rng.choice("abc"),
                    rng.random() < 0.2,
                    rng.random() < 0.3,
                    rng.choice(acls),
                )
                data = b"x" * rng.randint(0, 3)

                def create(c=c, child=child, eph=eph, seq=seq, acl=acl, data=data):
                    made = c.create(child, data, acl=acl, ephemeral=eph, sequence=seq)
                    paths.append(made)
                    return made

                rec((who, op, child, eph, seq, str(acl)), create)
            elif op == "delete" and p != base:
                v = rng.choice([-1, 0, 1])
                rec((who, op, p, v), c.delete, p, version=v)
            elif op == "set":
                v, data = rng.choice([-1, 0, 1, 2]), b"y" * rng.randint(0, 3)
                rec((who, op, p, v), c.set, p, data, version=v)
            elif op == "get":
                rec((who, op, p), c.get, p)
            elif op == "children":
                rec((who, op, p), sorted_children, c, p)
            elif op == "exists":
                rec((who, op, p), c.exists, p)
            elif op == "acl":
                rec((who, op, p), c.get_acls, p)
            elif op == "setacl" and p != base:
                acl, v = rng.choice(acls[1:]), rng.choice([-1, 0, 1])
                rec((who, op, p, str(acl), v), c.set_acls, p, acl, version=v)
            elif op == "multi":
                t = c.transaction()
                for _ in range(rng.randint(1, 3)):
                    kind, q = rng.choice(["create", "delete", "set", "check"]), rng.choice(paths)
                    if kind == "create":
                        t.create(q + "/" + rng.choice("abc"), b"m", sequence=rng.random() < 0.3)
                    elif kind == "delete" and q != base:
                        t.delete(q, version=rng.choice([-1, 0]))
                    elif kind == "set":
                        t.set_data(q, b"m", version=rng.choice([-1, 0, 1]))
                    else:
                        t.check(q, rng.choice([0, 1]))
                rec((who, op), t.commit)
            if rng.random() < 0.03:  # the other session ends: its ephemerals go
                other.stop()
                other.close()
                other = KazooClient(hosts=hosts, timeout=10)
                clients.append(other)
                other.start(timeout=15)
                out.append(("other session replaced",))

        def dump(p):
            try:
                data, stat = owner.get(p)
            except KazooException as e:
                return [(p, type(e).__name__)]
            rows = [(p, data, norm(stat))]
            for ch in sorted(owner.get_children(p)):
                rows += dump(p + "/" + ch)
            return rows

        out.append(("final tree", dump(base)))
    finally:
        for c in clients:
            c.stop()
            c.close()
    return out


@pytest.mark.integration
@pytest.mark.zookeeper
@pytest.mark.slow
def test_same_results_as_apache_zookeeper(zookeeper_server, squall_server) -> None:
    """The same seeded calls give the same results, errors and Stat counters on both servers."""
    for seed in (1, 2):
        expected = _random_session(zookeeper_server.address, seed, 200)
        actual = _random_session(squall_server.address, seed, 200)
        outcomes = {row[1] for row in expected if len(row) > 1 and isinstance(row[1], str)}
        assert {"ok", "NoNodeError", "NoAuthError", "BadVersionError"} <= outcomes  # the run exercised errors
        for i, (zk_row, squall_row) in enumerate(zip(expected, actual, strict=False)):  # lengths compared below
            assert squall_row == zk_row, f"seed {seed}, step {i}: ZooKeeper {zk_row} but squall {squall_row}"
        assert len(actual) == len(expected)
