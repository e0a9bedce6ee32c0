"""The node's asyncio server, driven by kazoo and by a raw jute client.

The node runs in a background thread of the test process (``BackgroundNode``)
on a free loopback port with a temporary data dir; every fixture stops it in
its teardown. Waits are bounded polls, never timed assertions.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadVersionError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
)
from kazoo.security import make_digest_acl

from harness import ports
from node.admin.four_letter import parse_whitelist
from node.config import NodeConfig
from node.server import BackgroundNode
from node.wire import protocol as P
from node.wire.jute import INT

pytestmark = pytest.mark.integration


def free_port() -> int:
    return ports.free_port()  # this worker's range under pytest-xdist (harness/ports.py)


def make_cfg(data_dir: Path, **kw: object) -> NodeConfig:
    base = dict(
        data_dir=data_dir, host="127.0.0.1", port=free_port(), tick_ms=100, four_letter_words=parse_whitelist("*")
    )  # the tests ask every word
    base.update(kw)
    return NodeConfig(**base).validate()  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[BackgroundNode]:
    n = BackgroundNode(make_cfg(tmp_path / "data"))
    n.start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def zk(node: BackgroundNode) -> Iterator[KazooClient]:
    c = KazooClient(hosts=node.hosts, timeout=2.0)
    c.start(timeout=10)
    try:
        yield c
    finally:
        c.stop()
        c.close()


def wait_until(pred, what: str, limit_s: float = 15.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what} after {limit_s} s")


class RawClient:
    """A minimal blocking jute client: exact control of frames and their order."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_ms: int = 4000,
        session_id: int = 0,
        password: bytes = b"\x00" * 16,
        last_zxid: int = 0,
        handshake: bool = True,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        self.xid = 0
        self.resp: P.ConnectResponse | None = None
        if handshake:
            self.send_frame(P.ConnectRequest(0, last_zxid, timeout_ms, session_id, password, False).encode())
            body = self.read_frame()
            self.resp = P.ConnectResponse.decode(body) if body is not None else None

    def send_frame(self, body: bytes) -> None:
        self.sock.sendall(INT.pack(len(body)) + body)

    def read_frame(self) -> bytes | None:
        """The next frame's body, or None if the server closed the connection."""
        while True:
            if len(self.buf) >= 4:
                n = INT.unpack_from(self.buf, 0)[0]
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    return body
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def request(self, op: int, record: object = P.EMPTY) -> int:
        self.xid += 1
        self.send_frame(P.encode_request(P.Request(self.xid, op, record)))
        return self.xid

    def call(self, op: int, record: object = P.EMPTY) -> tuple[P.ReplyHeader, object]:
        xid = self.request(op, record)
        while True:
            body = self.read_frame()
            assert body is not None, "server closed the connection"
            hdr, value = P.decode_reply(body, op)
            if hdr.xid == xid:
                return hdr, value

    def closed_by_server(self) -> bool:
        return self.read_frame() is None

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- CRUD and friends


def test_crud_with_versions(zk: KazooClient) -> None:
    assert zk.create("/a", b"one") == "/a"
    data, stat = zk.get("/a")
    assert data == b"one" and stat.version == 0 and stat.dataLength == 3
    stat2 = zk.set("/a", b"two")
    assert stat2.version == 1 and stat2.mzxid > stat.mzxid
    with pytest.raises(BadVersionError):
        zk.set("/a", b"x", version=0)
    with pytest.raises(NodeExistsError):
        zk.create("/a")
    zk.create("/a/b", b"")
    assert zk.get_children("/a") == ["b"]
    with pytest.raises(NotEmptyError):
        zk.delete("/a")
    zk.delete("/a", recursive=True)
    assert zk.exists("/a") is None
    with pytest.raises(NoNodeError):
        zk.get("/a")
    assert zk.create("/p/q/r", b"v", makepath=True) == "/p/q/r"
    _, stat = zk.get("/p")
    assert stat.numChildren == 1


def test_null_data_stays_null(zk: KazooClient) -> None:
    zk.create("/null", None)
    assert zk.get("/null")[0] is None
    zk.set("/null", b"x")
    zk.set("/null", None)
    assert zk.get("/null")[0] is None


def test_sequential_names(zk: KazooClient) -> None:
    zk.create("/seq")
    names = [zk.create("/seq/n-", b"", sequence=True) for _ in range(3)]
    assert names == [f"/seq/n-{i:010d}" for i in range(3)]


def test_create2_returns_stat_and_sync(zk: KazooClient) -> None:
    path, stat = zk.create("/c2", b"abc", include_data=True)
    assert path == "/c2" and stat.dataLength == 3
    assert zk.sync("/c2") == "/c2"


def test_ephemeral_goes_when_its_session_closes(node: BackgroundNode, zk: KazooClient) -> None:
    other = KazooClient(hosts=node.hosts, timeout=2.0)
    other.start(timeout=10)
    try:
        other.create("/eph", b"", ephemeral=True)
        assert zk.exists("/eph").ephemeralOwner == other.client_id[0]
    finally:
        other.stop()
        other.close()
    wait_until(lambda: zk.exists("/eph") is None, "the ephemeral to go after closeSession")


def test_ephemeral_goes_when_its_session_expires(node: BackgroundNode, zk: KazooClient) -> None:
    raw = RawClient(node.host, node.port, timeout_ms=200)  # clamped to 2 ticks = 200 ms
    try:
        assert raw.resp is not None and raw.resp.timeout_ms == 200
        hdr, _ = raw.call(P.CREATE, P.CreateRequest("/gone", b"", (P.AclRecord(31, "world", "anyone"),), 1))
        assert hdr.err == 0
        assert zk.exists("/gone") is not None
    finally:
        raw.close()  # no closeSession: only expiry removes it
    wait_until(lambda: zk.exists("/gone") is None, "the expired session's ephemeral to go")


def test_multi_all_or_nothing(zk: KazooClient) -> None:
    t = zk.transaction()
    t.create("/m1", b"1")
    t.create("/m2", b"2")
    t.check("/m1", 0)
    assert t.commit() == ["/m1", "/m2", True]
    t = zk.transaction()
    t.set_data("/m1", b"x")
    t.delete("/missing")
    t.create("/m3")
    results = t.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NoNodeError)
    assert zk.get("/m1")[0] == b"1" and zk.exists("/m3") is None


def test_data_and_child_watches_fire_once(zk: KazooClient) -> None:
    zk.create("/w", b"0")
    events = []
    zk.get("/w", watch=events.append)
    zk.get_children("/w", watch=events.append)
    zk.set("/w", b"1")
    zk.create("/w/c")
    zk.set("/w", b"2")  # the data watch was one-shot
    wait_until(lambda: len(events) >= 2, "two watch events")
    assert sorted(e.type for e in events) == ["CHANGED", "CHILD"]


def test_notification_precedes_the_reply_of_the_triggering_write(node: BackgroundNode) -> None:
    raw = RawClient(node.host, node.port)
    try:
        acl = (P.AclRecord(31, "world", "anyone"),)
        assert raw.call(P.CREATE, P.CreateRequest("/order", b"", acl, 0))[0].err == 0
        assert raw.call(P.GET_DATA, P.PathWatchRequest("/order", True))[0].err == 0
        xid = raw.request(P.SET_DATA, P.SetDataRequest("/order", b"new", -1))
        first = P.decode_reply(raw.read_frame(), P.SET_DATA)
        second = P.decode_reply(raw.read_frame(), P.SET_DATA)
        assert first[0].xid == P.NOTIFICATION_XID and first[1] == P.WatcherEvent(3, 3, "/order")
        assert second[0].xid == xid and second[0].err == 0
    finally:
        raw.close()


def test_replies_come_back_in_request_order_when_pipelined(node: BackgroundNode) -> None:
    raw = RawClient(node.host, node.port)
    try:
        acl = (P.AclRecord(31, "world", "anyone"),)
        ops = []
        for i in range(50):
            ops.append((raw.request(P.CREATE, P.CreateRequest(f"/p{i}", b"", acl, 0)), P.CREATE))
            ops.append((raw.request(P.GET_DATA, P.PathWatchRequest(f"/p{i}", False)), P.GET_DATA))
        for xid, op in ops:
            hdr, _ = P.decode_reply(raw.read_frame(), op)
            assert hdr.xid == xid and hdr.err == 0  # the read sees the write before it
    finally:
        raw.close()


def test_digest_auth_and_acls(node: BackgroundNode, zk: KazooClient) -> None:
    owner = KazooClient(hosts=node.hosts, timeout=2.0, auth_data=[("digest", "alice:secret")])
    owner.start(timeout=10)
    try:
        owner.create("/secret", b"s", acl=[make_digest_acl("alice", "secret", all=True)])
        assert owner.get("/secret")[0] == b"s"
        with pytest.raises(NoAuthError):
            zk.get("/secret")
        with pytest.raises(NoAuthError):  # 3.8: getACL needs READ or ADMIN
            zk.get_acls("/secret")
        acls, _ = owner.get_acls("/secret")
        assert acls[0].id.scheme == "digest" and acls[0].id.id.startswith("alice:")
    finally:
        owner.stop()
        owner.close()


def test_unknown_auth_scheme_fails_the_auth(node: BackgroundNode) -> None:
    c = KazooClient(hosts=node.hosts, timeout=2.0)
    c.start(timeout=10)
    try:
        with pytest.raises(AuthFailedError):
            c.add_auth("nosuchscheme", "x")
    finally:
        c.stop()
        c.close()


def test_who_am_i_and_ephemerals_and_counts(node: BackgroundNode) -> None:
    raw = RawClient(node.host, node.port)
    try:
        acl = (P.AclRecord(31, "world", "anyone"),)
        raw.call(P.CREATE, P.CreateRequest("/e", b"", acl, 0))
        raw.call(P.CREATE, P.CreateRequest("/e/x", b"", acl, 1))
        assert raw.call(P.GET_EPHEMERALS, P.PathRequest("/e"))[1] == ["/e/x"]
        assert raw.call(P.GET_ALL_CHILDREN_NUMBER, P.PathRequest("/e"))[1] == 1
        raw.send_frame(P.encode_request(P.Request(P.AUTH_XID, P.AUTH, P.AuthPacket(0, "digest", b"carol:pw"))))
        assert P.decode_reply(raw.read_frame(), P.AUTH)[0] == P.ReplyHeader(P.AUTH_XID, 0, 0)
        assert raw.call(P.WHO_AM_I)[1] == [("ip", "127.0.0.1"), ("digest", "carol")]
        hdr, _ = raw.call(P.RECONFIG, P.ReconfigRequest(None, None, None, -1))
        assert hdr.err == -123
        hdr, results = raw.call(
            P.MULTI_READ,
            P.MultiRequest(
                ((P.GET_DATA, P.PathWatchRequest("/e", False)), (P.GET_CHILDREN, P.PathWatchRequest("/nope", False)))
            ),
        )
        assert results[0].type == P.GET_DATA and results[1] == P.OpResult(P.ERROR, -101)
    finally:
        raw.close()


def test_persistent_recursive_watch_and_remove_watches(node: BackgroundNode) -> None:
    raw = RawClient(node.host, node.port)
    try:
        acl = (P.AclRecord(31, "world", "anyone"),)
        assert raw.call(P.ADD_WATCH, P.AddWatchRequest("/r", P.ADD_WATCH_PERSISTENT_RECURSIVE))[0].err == 0
        raw.request(P.CREATE, P.CreateRequest("/r", b"", acl, 0))
        hdr, ev = P.decode_reply(raw.read_frame(), P.CREATE)
        assert hdr.xid == -1 and ev == P.WatcherEvent(1, 3, "/r")
        raw.read_frame()  # the create reply
        raw.request(P.CREATE, P.CreateRequest("/r/deep", b"", acl, 0))
        hdr, ev = P.decode_reply(raw.read_frame(), P.CREATE)
        assert hdr.xid == -1 and ev == P.WatcherEvent(1, 3, "/r/deep")
        raw.read_frame()
        assert raw.call(P.REMOVE_WATCHES, P.WatchTypeRequest("/r", P.WATCHER_ANY))[0].err == 0
        assert raw.call(P.REMOVE_WATCHES, P.WatchTypeRequest("/r", P.WATCHER_ANY))[0].err == -121
    finally:
        raw.close()


def test_set_watches_delivers_missed_changes_at_once(node: BackgroundNode) -> None:
    raw = RawClient(node.host, node.port)
    try:
        acl = (P.AclRecord(31, "world", "anyone"),)
        hdr, _ = raw.call(P.CREATE, P.CreateRequest("/sw", b"", acl, 0))
        seen = hdr.zxid
        raw.call(P.SET_DATA, P.SetDataRequest("/sw", b"changed", -1))
        raw.xid += 1
        raw.send_frame(
            P.encode_request(P.Request(P.SET_WATCHES_XID, P.SET_WATCHES, P.SetWatches(seen, ("/sw",), ("/new",), ())))
        )
        hdr, ev = P.decode_reply(raw.read_frame(), P.SET_WATCHES)
        assert hdr.xid == -1 and ev == P.WatcherEvent(3, 3, "/sw")  # data changed after `seen`
        hdr, _ = P.decode_reply(raw.read_frame(), P.SET_WATCHES)
        assert hdr.xid == P.SET_WATCHES_XID and hdr.err == 0
        raw.request(P.CREATE, P.CreateRequest("/new", b"", acl, 0))  # the exist watch was registered
        hdr, ev = P.decode_reply(raw.read_frame(), P.CREATE)
        assert hdr.xid == -1 and ev == P.WatcherEvent(1, 3, "/new")
    finally:
        raw.close()


def test_empty_container_is_removed_by_the_cleanup_timer(node: BackgroundNode, zk: KazooClient) -> None:
    raw = RawClient(node.host, node.port)
    try:
        acl = (P.AclRecord(31, "world", "anyone"),)
        hdr, (path, stat) = raw.call(P.CREATE_CONTAINER, P.CreateRequest("/box", b"", acl, 4))
        assert hdr.err == 0 and path == "/box"
        raw.call(P.CREATE, P.CreateRequest("/box/item", b"", acl, 0))
        raw.call(P.DELETE, P.DeleteRequest("/box/item", -1))
    finally:
        raw.close()
    wait_until(lambda: zk.exists("/box") is None, "the empty container to be deleted")


# ---------------------------------------------------------------- sessions


def test_reconnect_moves_the_session_and_wrong_password_is_expired(node: BackgroundNode) -> None:
    first = RawClient(node.host, node.port)
    assert first.resp is not None
    sid, pw = first.resp.session_id, first.resp.password
    assert sid >> 56 == 1 and len(pw) == 16
    second = RawClient(node.host, node.port, session_id=sid, password=pw)
    try:
        assert second.resp is not None and second.resp.session_id == sid and second.resp.timeout_ms > 0
        assert first.closed_by_server()
        assert second.call(P.EXISTS, P.PathWatchRequest("/", False))[0].err == 0
        bad = RawClient(node.host, node.port, session_id=sid, password=b"\x01" * 16)
        assert bad.resp is not None and bad.resp.timeout_ms == 0 and bad.resp.session_id == 0
        assert bad.closed_by_server()
        bad.close()
    finally:
        first.close()
        second.close()


def test_client_ahead_of_the_server_is_refused(node: BackgroundNode) -> None:
    raw = RawClient(node.host, node.port, last_zxid=(7 << 32) + 5)
    try:
        assert raw.resp is None  # closed without a ConnectResponse
    finally:
        raw.close()


def test_unknown_opcode_gets_unimplemented_then_close(node: BackgroundNode, zk: KazooClient) -> None:
    raw = RawClient(node.host, node.port)
    try:
        raw.send_frame(struct.pack(">ii", 77, 999))
        hdr, _ = P.decode_reply(raw.read_frame(), 999)
        assert (hdr.xid, hdr.err) == (77, -6)
        assert raw.closed_by_server()
    finally:
        raw.close()
    assert zk.exists("/") is not None


def test_four_letter_words_while_sessions_are_live(node: BackgroundNode, zk: KazooClient) -> None:
    zk.create("/fl", b"x", ephemeral=True)
    zk.get("/fl", watch=lambda e: None)

    def word(w: str) -> str:
        with socket.create_connection((node.host, node.port), timeout=5) as s:
            s.sendall(w.encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    assert word("ruok") == "imok"
    assert word("isro") == "rw"
    srvr = word("srvr")
    assert "Mode: standalone" in srvr and "Zxid: 0x1" in srvr and "Node count:" in srvr
    assert "zk_server_state\tstandalone" in word("mntr")
    assert "Clients:" in word("stat")
    assert f"sid=0x{zk.client_id[0]:x}" in word("cons")
    assert "zookeeper.version=3.8.0" in word("envi")
    assert "clientPort=" in word("conf")
    assert "/fl" in word("dump")
    assert "Total watches:1" in word("wchs")
    assert "/fl" in word("wchp") and "/fl" in word("wchc")
    assert zk.server_version()[:2] == (3, 8)
    assert zk.get("/fl")[0] == b"x"  # the session is undisturbed


def test_connection_cap_per_address(tmp_path: Path) -> None:
    with BackgroundNode(make_cfg(tmp_path / "d", max_client_cnxns=2)) as n:
        a, b = RawClient(n.host, n.port), RawClient(n.host, n.port)
        try:
            assert a.resp is not None and b.resp is not None
            c = RawClient(n.host, n.port)
            assert c.resp is None
            c.close()
            assert a.call(P.EXISTS, P.PathWatchRequest("/", False))[0].err == 0
        finally:
            a.close()
            b.close()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "d")
    with BackgroundNode(cfg) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            c.create("/keep", b"v1")
            c.set("/keep", b"v2")
            zxid = c.last_zxid
        finally:
            c.stop()
            c.close()
    with BackgroundNode(cfg) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            data, stat = c.get("/keep")
            assert data == b"v2" and stat.version == 1
            assert c.create("/after") == "/after"
            assert c.exists("/after").czxid > zxid
        finally:
            c.stop()
            c.close()


def test_fsync_in_a_disk_thread_acknowledges_only_durable_writes(tmp_path: Path) -> None:
    """--fsync-in-thread: the loop keeps reading while the disk thread syncs; every acked write survives."""
    cfg = make_cfg(tmp_path / "d", fsync_inline=False)
    with BackgroundNode(cfg) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            pending = [c.create_async(f"/t{i}", str(i).encode()) for i in range(200)]
            assert [p.get(timeout=10) for p in pending] == [f"/t{i}" for i in range(200)]
        finally:
            c.stop()
            c.close()
    with BackgroundNode(make_cfg(tmp_path / "d")) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            assert len(c.get_children("/")) == 201 and c.get("/t199")[0] == b"199"
        finally:
            c.stop()
            c.close()


def test_snapshots_are_taken_and_recovery_uses_them(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "d", snapshot_every=5)
    with BackgroundNode(cfg) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            for i in range(30):
                c.create(f"/s{i}", str(i).encode())
        finally:
            c.stop()
            c.close()
    assert list((tmp_path / "d" / "ensemble").glob("raft-snap-*.bin")), "no snapshot was written"
    with BackgroundNode(cfg) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            assert sorted(c.get_children("/")) == sorted([f"s{i}" for i in range(30)] + ["zookeeper"])
            assert c.get("/s29")[0] == b"29"
        finally:
            c.stop()
            c.close()


def test_session_and_its_ephemeral_survive_a_restart(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "d", tick_ms=1000)
    with BackgroundNode(cfg) as n:
        raw = RawClient(n.host, n.port, timeout_ms=20000)
        assert raw.resp is not None
        sid, pw = raw.resp.session_id, raw.resp.password
        hdr, _ = raw.call(P.CREATE, P.CreateRequest("/mine", b"", (P.AclRecord(31, "world", "anyone"),), 1))
        zxid = hdr.zxid
        raw.close()
    with BackgroundNode(cfg) as n:
        again = RawClient(n.host, n.port, session_id=sid, password=pw, last_zxid=zxid)
        try:
            assert again.resp is not None and again.resp.session_id == sid and again.resp.timeout_ms == 20000
            hdr, stat = again.call(P.EXISTS, P.PathWatchRequest("/mine", False))
            assert hdr.err == 0 and stat.ephemeral_owner == sid
            again.call(P.CLOSE_SESSION)
            assert again.closed_by_server()
        finally:
            again.close()


def test_lose_writes_fault_loses_writes(tmp_path: Path) -> None:
    with BackgroundNode(make_cfg(tmp_path / "d", unsafe_test_fault="lose-writes")) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            c.create("/lw", b"0")
            acked = [c.set("/lw", str(i).encode()) for i in range(1, 11)]
            assert len(acked) == 10  # every write is acknowledged...
            assert c.get("/lw")[1].version < 10  # ...but some were never applied
            made = [c.create(f"/lw/c{i}", b"") for i in range(10)]
            assert made == [f"/lw/c{i}" for i in range(10)]  # creates too are all acknowledged...
            assert len(c.get_children("/lw")) < 10  # ...and some are missing
        finally:
            c.stop()
            c.close()


def test_stale_reads_fault_serves_old_data(tmp_path: Path) -> None:
    with BackgroundNode(make_cfg(tmp_path / "d", unsafe_test_fault="stale-reads")) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            c.create("/sr", b"0")
            for i in range(1, 6):
                c.set("/sr", str(i).encode())
            assert c.get("/sr")[0] != b"5"
        finally:
            c.stop()
            c.close()


# ---------------------------------------------------------------- the command line


def test_cli_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    cfg_file = tmp_path / "zoo.cfg"
    cfg_file.write_text(
        f"# a ZooKeeper-style file\ntickTime=100\nclientPort={port}\n4lw.commands.whitelist=*\ninitLimit=5\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "node", "--data-dir", str(tmp_path / "d"), "--config", str(cfg_file)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = []
        for line in proc.stderr:  # bounded by the test timeout; the node prints this within a second
            lines.append(line)
            if "squall node serving on" in line:
                break
        assert f"squall node serving on 127.0.0.1:{port}" in "".join(lines), "".join(lines)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"ruok")
            assert s.recv(16) == b"imok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "ignored (not used by squall): initLimit" in (tmp_path / "d" / "squall-node.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_cli_rejects_bad_flags_saying_what_is_allowed(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "node", "--data-dir", str(tmp_path), "--tick-ms", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert r.returncode == 3 and "10<=x<=600000" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "node"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert r.returncode == 3 and "--data-dir" in r.stderr


def test_zoo_cfg_parsing() -> None:
    from node.config import ConfigError, load_config, parse_zoo_cfg

    values, ignored = parse_zoo_cfg("dataDir=/x\nclientPort=2999\n# c\n\nadmin.serverPort=8080\njute.maxbuffer=4096\n")
    assert values == {"data_dir": Path("/x"), "port": 2999, "max_frame_bytes": 4096} and ignored == ["admin.serverPort"]
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_zoo_cfg("=nonsense\n")
    with pytest.raises(ConfigError, match="allowed: 1..65535"):
        load_config(None, {"data_dir": Path("/x"), "port": 0})


def test_four_letter_rendering_is_pure_and_zookeeper_shaped() -> None:
    from node.admin.four_letter import AdminView, ConnectionInfo, answer

    view = AdminView(
        zxid=0x100000007,
        node_count=5,
        connections=(ConnectionInfo("127.0.0.1:5", 0x1AB, 0, 3, 4),),
        watches_by_session={0x1AB: ["/a"]},
        watches_by_path={"/a": [0x1AB]},
        watch_count=1,
        watched_paths=1,
        ephemerals={0x1AB: ["/e"]},
        session_timeouts={0x1AB: 4000},
    )
    srvr = answer("srvr", view)
    assert "Zxid: 0x100000007\n" in srvr and "Mode: standalone\n" in srvr and "Node count: 5\n" in srvr
    assert answer("wchc", view) == "0x1ab\n\t/a\n"
    assert answer("wchp", view) == "/a\n\t0x1ab\n"
    assert "0x1ab:\n\t/e\n" in answer("dump", view)
    assert answer("ruok", view) == "imok" and answer("isro", view) == "rw"
    assert "known:" in answer("xxxx", view)
