"""Connection hygiene, with raw sockets: idle connections and malformed requests.

* A connection that delivers no ConnectRequest within the handshake bound
  (5 ticks, see NodeConfig.handshake_timeout_ms) is closed, so idle sockets
  cannot hold the per-address connection limit against real clients.
* A malformed body inside a valid frame is answered as Apache ZooKeeper 3.8
  answers it (MarshallingError -5, BadArguments -8, ...), and the connection
  stays open where ZooKeeper keeps it. The expected table was taken from
  ZooKeeper with these very frames, and ``test_zookeeper_answers_the_same``
  checks it against ZooKeeper again whenever it is installed.

Both shells: the standalone node and a one-member ensemble, in-process.
"""

from __future__ import annotations

import socket
import struct
import tempfile
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from node.config import NodeConfig
from node.server import BackgroundNode
from node.wire import protocol as P
from tests.node.servers import free_port, zookeeper_installed, zookeeper_standalone
from tests.node.test_server import RawClient


def _s(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


def _hdr(xid: int, op: int) -> bytes:
    return struct.pack(">ii", xid, op)


_ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + _s(b"world") + _s(b"anyone")
X = 77

# name -> (request body, expected answer: (xid, err) or "closed")
CASES: dict[str, tuple[bytes, object]] = {
    "getData, path runs past the frame": (_hdr(X, P.GET_DATA) + struct.pack(">i", 10) + b"/ab", (X, -5)),
    "getData without its watch byte": (_hdr(X, P.GET_DATA) + _s(b"/"), (X, -5)),
    "getData, invalid UTF-8 path": (_hdr(X, P.GET_DATA) + _s(b"/\xff\xfe") + b"\0", (X, -101)),
    "exists, UTF-8 surrogate in path": (_hdr(X, P.EXISTS) + _s(b"/\xed\xa0\x80") + b"\0", (X, -101)),
    "create, invalid UTF-8 path": (_hdr(X, P.CREATE) + _s(b"/\xff") + _s(b"") + _ACL + struct.pack(">i", 0), (X, -8)),
    "create, path without a slash": (
        _hdr(X, P.CREATE) + _s(b"noslash") + _s(b"") + _ACL + struct.pack(">i", 0),
        (X, -8),
    ),
    "create, truncated": (_hdr(X, P.CREATE) + _s(b"/t") + struct.pack(">i", 100), (X, -5)),
    "create, negative ACL count": (_hdr(X, P.CREATE) + _s(b"/n") + _s(b"") + struct.pack(">ii", -5, 0), (X, -114)),
    "create, null ACL": (_hdr(X, P.CREATE) + _s(b"/n2") + _s(b"") + struct.pack(">ii", -1, 0), (X, -114)),
    "setData, truncated": (_hdr(X, P.SET_DATA) + _s(b"/"), (X, -5)),
    "delete, truncated": (_hdr(X, P.DELETE) + _s(b"/zz"), (X, -5)),
    "getChildren, huge string length": (_hdr(X, P.GET_CHILDREN) + struct.pack(">i", 1 << 30) + b"/", (X, -5)),
    "sync, truncated": (_hdr(X, P.SYNC) + b"\0\0", (X, -5)),
    "multi, truncated": (_hdr(X, P.MULTI) + struct.pack(">i", 1) + b"\0", (X, -5)),
    "setWatches, truncated": (_hdr(-8, P.SET_WATCHES) + struct.pack(">q", 0), (-8, -5)),
    "auth, truncated": (_hdr(-4, P.AUTH) + struct.pack(">i", 0) + _s(b"digest"), "closed"),
    "shorter than a request header": (struct.pack(">i", X), "closed"),
}


def answers(host: str, port: int) -> dict[str, object]:
    """Each case on a fresh session; for an answer, also whether the connection still serves."""
    out: dict[str, object] = {}
    for name, (body, _expected) in CASES.items():
        c = RawClient(host, port)
        try:
            assert c.resp is not None, "no session"
            c.sock.settimeout(10)
            c.send_frame(body)
            frame = c.read_frame()
            if frame is None:
                out[name] = "closed"
                continue
            xid, _zxid, err = struct.unpack_from(">iqi", frame, 0)
            hdr, _ = c.call(P.EXISTS, P.PathWatchRequest("/", False))  # still open and serving
            assert hdr.err == 0, f"{name}: the connection no longer serves"
            out[name] = (xid, err)
        finally:
            c.close()
    return out


EXPECTED = {name: expected for name, (_body, expected) in CASES.items()}


def _cfg(tmp_path: Path, ensemble: bool, **kw) -> NodeConfig:
    port = free_port()
    peers = f"1=127.0.0.1:{port}:{free_port()}" if ensemble else ""
    return NodeConfig(data_dir=tmp_path / "d", host="127.0.0.1", port=port, tick_ms=100, peers=peers, **kw).validate()


SHELLS = pytest.mark.parametrize("ensemble", [False, True], ids=["standalone", "ensemble"])


def _wait_serving(host: str, port: int) -> None:
    zk = KazooClient(hosts=f"{host}:{port}", timeout=10)
    zk.start(timeout=20)  # a one-member ensemble elects itself first
    zk.stop()
    zk.close()


@SHELLS
def test_malformed_requests_are_answered_as_zookeeper_answers_them(tmp_path: Path, ensemble: bool) -> None:
    with BackgroundNode(_cfg(tmp_path, ensemble)) as n:
        _wait_serving(n.host, n.port)
        assert answers(n.host, n.port) == EXPECTED


@pytest.mark.zookeeper
@pytest.mark.integration
@pytest.mark.slow
def test_zookeeper_answers_the_same() -> None:
    if not zookeeper_installed():
        pytest.skip("Debian's zookeeper package is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        m = zookeeper_standalone(Path(tmp))
        m.start()
        try:
            deadline = time.monotonic() + 30
            while True:  # ZooKeeper answers ruok before it serves sessions
                c = RawClient(m.host, m.port)
                ok = c.resp is not None
                c.close()
                if ok or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert answers(m.host, m.port) == EXPECTED
        finally:
            m.kill()


@SHELLS
def test_a_connection_without_a_handshake_is_closed_and_frees_its_slot(tmp_path: Path, ensemble: bool) -> None:
    cfg = _cfg(tmp_path, ensemble, max_client_cnxns=3)
    with BackgroundNode(cfg) as n:
        _wait_serving(n.host, n.port)
        idle = [socket.create_connection((n.host, n.port), timeout=30) for _ in range(3)]
        try:
            idle[1].sendall(b"\x00\x00")  # half a frame length is no handshake either
            for s in idle:
                assert s.recv(1) == b"", "an idle connection was not closed"  # waits for the server's close
        finally:
            for s in idle:
                s.close()
        zk = KazooClient(hosts=n.hosts, timeout=10)
        zk.start(timeout=20)  # the per-address limit is free again
        try:
            assert zk.exists("/") is not None
        finally:
            zk.stop()
            zk.close()


def test_the_handshake_bound_is_five_ticks() -> None:
    assert NodeConfig(data_dir=Path("d"), tick_ms=2000).handshake_timeout_ms == 10_000  # ZooKeeper's 10 s
    assert NodeConfig(data_dir=Path("d"), tick_ms=100).handshake_timeout_ms == 500
