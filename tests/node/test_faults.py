"""The TEST-ONLY database faults (node/faults.py) on the replicated path.

Each fault is shown to change behaviour when armed and to be inert when not:
the pure replica ones with the synchronous three-replica network of
test_replica.py (deterministic), the shell ones (drop-watch-events,
skip-fsync) and the replica ones on a standalone node (a one-member group,
the same code) served in-process.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from node import faults
from node.config import ConfigError, NodeConfig
from node.errors import Err
from node.replica import Read, Replica, Sync, Write
from node.server import BackgroundNode
from node.tree import OPEN_ACL_UNSAFE, CheckOp, CreateOp, DeleteOp, MultiOp, SetDataOp
from tests.node.servers import free_port
from tests.node.test_replica import Cluster

ARMED = pytest.mark.parametrize("armed", [False, True], ids=["unarmed", "armed"])


def _cluster(fault: str, armed: bool) -> Cluster:
    return Cluster(unsafe_fault=fault if armed else "")


def _write(c: Cluster, i: int, conn: int, sid: int, seq: int, op) -> None:
    c.call(i, "client_request", conn, sid, seq, Write(op), c.now)
    c.deliver_all()
    c.tick(2)


def test_an_unknown_fault_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: lose-writes, stale-reads, sync-no-wait"):
        Replica(1, [1], None, __import__("random").Random(1), unsafe_fault="gremlins")
    with pytest.raises(ConfigError, match="'gremlins' is not supported"):
        NodeConfig(data_dir=Path("d"), unsafe_test_fault="gremlins").validate()
    with pytest.raises(faults.UnknownFault, match="'gremlins' is not supported by the node; allowed: lose-writes"):
        faults.check("gremlins")
    assert [faults.check(name) for name in faults.FAULTS] == list(faults.FAULTS)  # one node or five: all of them


@ARMED
def test_lose_writes_acknowledges_writes_it_never_applies(armed: bool) -> None:
    c = _cluster("lose-writes", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/lw", b"0", OPEN_ACL_UNSAFE))
    for k in range(10):
        _write(c, f, 1, sid, 3 + k, SetDataOp("/lw", str(k).encode(), -1))
    acks = [r for r in c.replies[1] if r.seq >= 3]
    assert len(acks) == 10 and all(r.err == Err.OK for r in acks)  # every write acknowledged...
    versions = {c.r(i).tree.get_data("/lw")[1].version for i in c.ids}
    if armed:
        assert versions == {8}  # ...but the 5th and 10th eligible writes were never applied
    else:
        assert versions == {10}


@ARMED
def test_stale_reads_serve_a_lagging_copy(armed: bool) -> None:
    c = _cluster("stale-reads", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/sr", b"0", OPEN_ACL_UNSAFE))
    for k in range(1, 6):
        _write(c, f, 1, sid, 2 + k, SetDataOp("/sr", str(k).encode(), -1))
    c.call(f, "client_read", 1, sid, 20, Read("get_data", "/sr"), c.now)
    data = c.last_reply(1).value[0]
    assert data == (b"2" if armed else b"5")  # armed: the last STALE_LAG (3) txns are not visible
    assert c.r(f).tree.get_data("/sr")[0] == b"5"  # the replicated state itself is right


@ARMED
def test_sync_no_wait_lets_a_read_after_sync_miss_a_committed_write(armed: bool) -> None:
    c = _cluster("sync-no-wait", armed)
    lead = c.elect()
    _a, b = [i for i in c.ids if i != lead]
    sid, _ = c.new_session(lead, conn=1)
    sid_b, _ = c.new_session(b, conn=2)
    c.call(lead, "client_request", 1, sid, 2, Write(CreateOp("/s", b"", OPEN_ACL_UNSAFE)), c.now)
    c.deliver_all(drop=lambda m: m.to == b)  # committed by the leader and a; b misses it
    c.call(b, "client_request", 2, sid_b, 2, Sync("/"), c.now)
    c.call(b, "client_read", 2, sid_b, 3, Read("exists", "/s"), c.now)
    c.deliver_all()
    c.tick(3)
    sync, read = c.replies[2][1], c.replies[2][2]
    assert sync.seq == 2 and sync.err == Err.OK and read.seq == 3
    if armed:
        assert read.value is None  # the read after sync missed a write committed before the sync
    else:
        assert read.value is not None


@ARMED
def test_stale_reconnect_accepts_a_client_that_has_seen_more(armed: bool) -> None:
    c = _cluster("stale-reconnect", armed)
    lead = c.elect()
    a, b = [i for i in c.ids if i != lead]
    sid, pw = c.new_session(a, conn=1)
    c.cut = {(lead, b), (b, lead), (a, b), (b, a)}
    _write(c, a, 1, sid, 2, CreateOp("/later", b"", OPEN_ACL_UNSAFE))
    seen = c.last_reply(1)
    assert seen.err == Err.OK and c.r(b).last_zxid < seen.zxid
    c.call(b, "client_connect", 2, sid, pw, seen.zxid, c.now)
    if armed:
        assert c.last_reply(2).err == Err.OK
        c.call(b, "client_read", 2, sid, 3, Read("exists", "/later"), c.now)
        assert c.last_reply(2).value is None  # the client's own write is gone: time went back
    else:
        assert c.last_reply(2).err == Err.CONNECTION_LOSS


@ARMED
def test_multi_partial_keeps_the_earlier_ops_of_a_failed_multi_on_every_replica(armed: bool) -> None:
    c = _cluster("multi-partial", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(
        c, f, 1, sid, 2, MultiOp((CreateOp("/m1", b"", OPEN_ACL_UNSAFE), CreateOp("/no/such", b"", OPEN_ACL_UNSAFE)))
    )
    rep = c.last_reply(1)
    assert rep.err == Err.NO_NODE  # the client is told the multi failed...
    present = {c.r(i).tree.exists("/m1") is not None for i in c.ids}
    assert present == {armed}  # ...yet under the fault its first op took effect
    assert len({c.r(i).tree.digest() for i in c.ids}) == 1  # on every replica alike


@ARMED
def test_sequence_from_child_count_hands_a_sequential_name_out_again(armed: bool) -> None:
    c = _cluster("sequence-from-child-count", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/q", b"", OPEN_ACL_UNSAFE))
    names = []
    for seq, op in enumerate(
        [
            CreateOp("/q/e-", b"", OPEN_ACL_UNSAFE, flags=2),  # PERSISTENT_SEQUENTIAL
            CreateOp("/q/e-", b"", OPEN_ACL_UNSAFE, flags=2),
            DeleteOp("/q/e-0000000000"),
            CreateOp("/q/e-", b"", OPEN_ACL_UNSAFE, flags=2),
            DeleteOp("/q/e-0000000001"),
            CreateOp("/q/e-", b"", OPEN_ACL_UNSAFE, flags=2),
        ],
        start=3,
    ):
        _write(c, f, 1, sid, seq, op)
        rep = c.last_reply(1)
        if isinstance(op, CreateOp):
            names.append(rep.value[0] if rep.err == Err.OK else rep.err)
    if armed:  # the count falls back with each delete: e-1 collides, then e-0 is handed out a second time
        assert names == ["/q/e-0000000000", "/q/e-0000000001", Err.NODE_EXISTS, "/q/e-0000000000"]
    else:
        assert names == ["/q/e-0000000000", "/q/e-0000000001", "/q/e-0000000002", "/q/e-0000000003"]
    assert len({c.r(i).tree.digest() for i in c.ids}) == 1  # every replica alike


@ARMED
def test_forwards_reversed_applies_one_turns_writes_newest_first(armed: bool) -> None:
    c = _cluster("forwards-reversed", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/b", b"", OPEN_ACL_UNSAFE))
    rep = c.r(f)
    rep.deferred = True  # as production runs it: both writes arrive in one turn of the effect runner
    try:
        c.call(f, "client_request", 1, sid, 3, Write(SetDataOp("/b", b"first", -1)), c.now)
        c.call(f, "client_request", 1, sid, 4, Write(SetDataOp("/b", b"second", -1)), c.now)
        c.handle(f, rep.drain())
    finally:
        rep.deferred = False
    c.deliver_all()
    c.tick(2)
    assert {c.r(i).tree.get_data("/b")[0] for i in c.ids} == {b"first" if armed else b"second"}


@ARMED
def test_diverge_makes_the_highest_member_apply_other_data(armed: bool) -> None:
    c = _cluster("diverge", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/d", b"", OPEN_ACL_UNSAFE))
    _write(c, f, 1, sid, 3, SetDataOp("/d", b"v", -1))
    data = {i: c.r(i).tree.get_data("/d")[0] for i in c.ids}
    if armed:
        assert data == {1: b"v", 2: b"v", 3: b"v" + faults.DIVERGE_SUFFIX}
    else:
        assert set(data.values()) == {b"v"}


@ARMED
def test_idempotent_delete_lets_two_consumers_both_delete_one_item(armed: bool) -> None:
    c = _cluster("idempotent-delete", armed)
    a, b = c.follower(), c.leader()
    sa, _ = c.new_session(a, conn=1)
    sb, _ = c.new_session(b, conn=2)
    _write(c, a, 1, sa, 2, CreateOp("/item", b"x", OPEN_ACL_UNSAFE))
    # both consumers saw the item; both delete it
    c.call(a, "client_request", 1, sa, 3, Write(DeleteOp("/item")), c.now)
    c.call(b, "client_request", 2, sb, 3, Write(DeleteOp("/item")), c.now)
    c.deliver_all()
    c.tick(2)
    errs = sorted(r.err for r in (c.last_reply(1), c.last_reply(2)))
    assert errs == ([Err.OK, Err.OK] if armed else [Err.NO_NODE, Err.OK])  # armed: both "won" the item
    assert {c.r(i).tree.exists("/item") for i in c.ids} == {None}
    assert len({c.r(i).tree.digest() for i in c.ids}) == 1  # every replica alike


@ARMED
def test_local_version_check_lets_two_conditional_sets_at_one_version_both_succeed(armed: bool) -> None:
    c = _cluster("local-version-check", armed)
    a, b = c.follower(), c.leader()
    sa, _ = c.new_session(a, conn=1)
    sb, _ = c.new_session(b, conn=2)
    _write(c, a, 1, sa, 2, CreateOp("/n", b"0", OPEN_ACL_UNSAFE))
    # a counter's read-modify-write by two clients that both read version 0
    c.call(a, "client_request", 1, sa, 3, Write(SetDataOp("/n", b"1", 0)), c.now)
    c.call(b, "client_request", 2, sb, 3, Write(SetDataOp("/n", b"2", 0)), c.now)
    c.deliver_all()
    c.tick(2)
    errs = sorted(r.err for r in (c.last_reply(1), c.last_reply(2)))
    version = {c.r(i).tree.get_data("/n")[1].version for i in c.ids}
    if armed:
        assert errs == [Err.OK, Err.OK] and version == {2}  # both "won": one increment is lost
    else:
        assert errs == [Err.BAD_VERSION, Err.OK] and version == {1}
    # a version that is already wrong here is refused at once, armed or not
    c.call(a, "client_request", 1, sa, 4, Write(SetDataOp("/n", b"3", 0)), c.now)
    c.deliver_all()
    assert c.last_reply(1).err == Err.BAD_VERSION


@ARMED
def test_stale_read_cache_misses_a_multis_write_but_not_a_set(armed: bool) -> None:
    c = _cluster("stale-read-cache", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/fence", b"0", OPEN_ACL_UNSAFE))
    c.call(f, "client_read", 1, sid, 3, Read("get_data", "/fence"), c.now)
    assert c.last_reply(1).value[0] == b"0"
    _write(c, f, 1, sid, 4, MultiOp((CheckOp("/fence", 0), SetDataOp("/fence", b"1", -1))))
    c.call(f, "client_read", 1, sid, 5, Read("get_data", "/fence"), c.now)
    assert c.last_reply(1).value[0] == (b"0" if armed else b"1")  # armed: the multi's write is not seen
    _write(c, f, 1, sid, 6, SetDataOp("/fence", b"2", -1))
    c.call(f, "client_read", 1, sid, 7, Read("get_data", "/fence"), c.now)
    assert c.last_reply(1).value[0] == b"2"  # a plain setData drops the cached entry
    assert {c.r(i).tree.get_data("/fence")[0] for i in c.ids} == {b"2"}


@ARMED
def test_throttle_leak_refuses_writes_and_syncs_once_enough_syncs_were_served(armed: bool) -> None:
    c = _cluster("throttle-leak", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/t", b"", OPEN_ACL_UNSAFE))
    for k in range(faults.THROTTLE_LIMIT):  # each sync takes a count that is never given back
        c.call(f, "client_request", 1, sid, 3 + k, Sync("/t"), c.now)
        c.deliver_all()
        assert c.last_reply(1).err == Err.OK
    c.call(f, "client_request", 1, sid, 50, Sync("/t"), c.now)
    c.deliver_all()
    sync = c.last_reply(1)
    _write(c, f, 1, sid, 51, SetDataOp("/t", b"w", -1))
    write = c.last_reply(1)
    c.call(f, "client_read", 1, sid, 52, Read("get_data", "/t"), c.now)
    read = c.last_reply(1)
    assert read.err == Err.OK  # plain reads still work
    if armed:
        assert sync.err == write.err == Err.CONNECTION_LOSS and read.value[0] == b""  # refused, not applied
    else:
        assert sync.err == write.err == Err.OK and read.value[0] == b"w"
    other = c.leader()  # the count is per member: the leader still takes writes
    so, _ = c.new_session(other, conn=2)
    _write(c, other, 2, so, 2, SetDataOp("/t", b"v", -1))
    assert c.last_reply(2).err == Err.OK


# ---------------------------------------------------------------- faults the shell carries out


def _member_cfg(tmp_path: Path, fault: str) -> NodeConfig:
    """A standalone node: a one-member group, on the same code path as a member of three."""
    return NodeConfig(
        data_dir=tmp_path / "d", host="127.0.0.1", port=free_port(), tick_ms=100, unsafe_test_fault=fault
    ).validate()


@ARMED
def test_drop_watch_events_loses_every_third_notification_of_a_connection(tmp_path: Path, armed: bool) -> None:
    with BackgroundNode(_member_cfg(tmp_path, "drop-watch-events" if armed else "")) as n:
        zk = KazooClient(hosts=n.hosts, timeout=10)
        zk.start(timeout=20)
        try:
            got: list[str] = []
            lock = threading.Lock()

            def fired(ev) -> None:
                with lock:
                    got.append(ev.path)

            for k in range(6):
                zk.create(f"/w{k}", b"")
                zk.exists(f"/w{k}", watch=fired)
            for k in range(6):
                zk.set(f"/w{k}", b"x")  # a notification reaches the client before this reply
            zk.sync("/")
            deadline = time.monotonic() + 5  # kazoo runs callbacks on its own thread
            while time.monotonic() < deadline and len(got) < (4 if armed else 6):
                time.sleep(0.05)
            time.sleep(0.2)
            with lock:
                paths = sorted(got)
            assert paths == (["/w0", "/w1", "/w3", "/w4"] if armed else [f"/w{k}" for k in range(6)])
        finally:
            zk.stop()
            zk.close()


@ARMED
def test_skip_fsync_acknowledges_writes_without_fdatasync(
    tmp_path: Path, armed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    with BackgroundNode(_member_cfg(tmp_path, "skip-fsync" if armed else "")) as n:
        zk = KazooClient(hosts=n.hosts, timeout=10)
        zk.start(timeout=20)
        try:
            zk.create("/f", b"")
            calls = []
            real = os.fdatasync
            monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
            for k in range(5):
                zk.set("/f", str(k).encode())
            monkeypatch.setattr(os, "fdatasync", real)
            assert zk.get("/f")[0] == b"4"  # acknowledged and applied...
            assert (len(calls) == 0) == armed  # ...with no fdatasync under the fault
        finally:
            zk.stop()
            zk.close()


@ARMED
def test_a_standalone_node_carries_out_the_replica_faults(tmp_path: Path, armed: bool) -> None:
    """lose-writes on one node: the replica's code, armed on a one-member group."""
    with BackgroundNode(_member_cfg(tmp_path, "lose-writes" if armed else "")) as n:
        zk = KazooClient(hosts=n.hosts, timeout=10)
        zk.start(timeout=20)
        try:
            zk.create("/lw", b"0")
            for k in range(1, 11):
                zk.set("/lw", str(k).encode())  # every one acknowledged
            version = zk.get("/lw")[1].version
            assert (version < 10) == armed, version
        finally:
            zk.stop()
            zk.close()


def test_the_node_refuses_an_unknown_fault_naming_the_allowed_ones(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from node.cli import node_command

    r = CliRunner().invoke(node_command, ["--data-dir", str(tmp_path / "d"), "--unsafe-test-fault", "gremlins"])
    assert r.exit_code == 2 and "allowed: lose-writes" in r.output, r.output


@pytest.mark.parametrize("fault", sorted(faults.NEEDS_PEERS))
def test_a_standalone_node_refuses_a_fault_that_cannot_show_on_it(tmp_path: Path, fault: str) -> None:
    """Armed on a sole member these change nothing observable: a gate run with one would pass."""
    from click.testing import CliRunner

    from node.cli import node_command

    r = CliRunner().invoke(node_command, ["--data-dir", str(tmp_path / "d"), "--unsafe-test-fault", fault])
    assert r.exit_code == 2 and "cannot show on a standalone node" in r.output and "--nodes 3" in r.output, r.output
    with pytest.raises(faults.UnknownFault, match="cannot show"):
        faults.check(fault, members=1)
    assert faults.check(fault, members=3) == fault


def test_the_harness_offers_every_node_fault() -> None:
    """`squall run --unsafe-db-fault` accepts exactly the node's faults (no drift)."""
    from harness.dbs.squall import SquallDB

    assert sorted(SquallDB.unsafe_faults) == sorted(faults.FAULTS)
