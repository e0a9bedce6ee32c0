"""Fuzzing the server: random, mutated, oversized and dribbled frames.

A kazoo client with an ephemeral node stays connected throughout; after
every hostile connection it must still work with the same session, and its
ephemeral must still be there. The codec alone is fuzzed in test_wire.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kazoo.client import KazooClient

from node.server import BackgroundNode
from node.wire import protocol as P
from node.wire.jute import INT
from tests.node.test_server import RawClient, make_cfg

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACL = (P.AclRecord(31, "world", "anyone"),)


class Bystander:
    def __init__(self, node: BackgroundNode, client: KazooClient) -> None:
        self.node = node
        self.client = client
        self.session = client.client_id
        self.checks = 0

    def assert_undisturbed(self) -> None:
        """The other client's session, its ephemeral and the node all still work."""
        self.checks += 1
        assert self.client.connected
        assert self.client.client_id == self.session
        assert self.client.exists("/bystander") is not None
        self.client.set("/bystander", str(self.checks).encode())
        assert self.client.get("/bystander")[0] == str(self.checks).encode()


@pytest.fixture(scope="module")
def bystander(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bystander]:
    n = BackgroundNode(
        make_cfg(Path(tmp_path_factory.mktemp("fuzz")) / "data", max_frame_bytes=4096, tick_ms=500, max_client_cnxns=0)
    )
    n.start()
    c = KazooClient(hosts=n.hosts, timeout=10.0)
    try:
        c.start(timeout=10)
        c.create("/bystander", b"", ephemeral=True)
        yield Bystander(n, c)
    finally:
        c.stop()
        c.close()
        n.stop()


def blast(node: BackgroundNode, payload: bytes, read_s: float = 0.3) -> bytes:
    """Send payload on a fresh connection, read what comes back until close or a short quiet spell."""
    got = b""
    with socket.create_connection((node.host, node.port), timeout=5) as s:
        try:
            s.sendall(payload)
        except OSError:
            return got  # the server may have closed on us mid-send: that is fine
        s.settimeout(read_s)
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    return got


def handshake() -> bytes:
    body = P.ConnectRequest(0, 0, 4000, 0, b"\x00" * 16, False).encode()
    return INT.pack(len(body)) + body


def framed(req: P.Request) -> bytes:
    body = P.encode_request(req)
    return INT.pack(len(body)) + body


VALID_REQUESTS = [
    P.Request(1, P.CREATE, P.CreateRequest("/f", b"x", ACL, 0)),
    P.Request(2, P.GET_DATA, P.PathWatchRequest("/f", True)),
    P.Request(3, P.SET_DATA, P.SetDataRequest("/f", b"y", -1)),
    P.Request(
        4,
        P.MULTI,
        P.MultiRequest(((P.CREATE, P.CreateRequest("/g", b"", ACL, 1)), (P.DELETE, P.DeleteRequest("/g", -1)))),
    ),
    P.Request(5, P.GET_CHILDREN2, P.PathWatchRequest("/", True)),
    P.Request(6, P.SET_WATCHES, P.SetWatches(0, ("/f",), ("/h",), ("/",))),
    P.Request(7, P.DELETE, P.DeleteRequest("/f", -1)),
]


def test_oversize_length_prefix_closes_only_that_connection(bystander: Bystander) -> None:
    raw = RawClient(bystander.node.host, bystander.node.port)
    try:
        raw.sock.sendall(INT.pack(10_000_000))
        assert raw.closed_by_server()
    finally:
        raw.close()
    assert blast(bystander.node, INT.pack(-5) + b"xxxx") == b""
    bystander.assert_undisturbed()


def test_garbage_instead_of_a_handshake(bystander: Bystander) -> None:
    assert blast(bystander.node, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    assert blast(bystander.node, INT.pack(3) + b"abc") == b""  # a too-short ConnectRequest
    bystander.assert_undisturbed()


def test_truncated_frame_then_hangup(bystander: Bystander) -> None:
    blast(bystander.node, handshake() + INT.pack(100) + b"\x00" * 10)
    bystander.assert_undisturbed()


def test_requests_dribbled_one_byte_at_a_time(bystander: Bystander) -> None:
    raw = RawClient(bystander.node.host, bystander.node.port)
    try:
        data = framed(P.Request(1, P.EXISTS, P.PathWatchRequest("/bystander", False)))
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in data:
            raw.sock.sendall(bytes([b]))
        hdr, stat = P.decode_reply(raw.read_frame(), P.EXISTS)
        assert hdr.xid == 1 and hdr.err == 0 and stat.ephemeral_owner == bystander.session[0]
    finally:
        raw.close()
    bystander.assert_undisturbed()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=300), after_handshake=st.booleans())
def test_random_frames_never_hurt_the_node(bystander: Bystander, junk: bytes, after_handshake: bool) -> None:
    prefix = handshake() if after_handshake else b""
    blast(bystander.node, prefix + INT.pack(len(junk)) + junk, read_s=0.05)
    bystander.assert_undisturbed()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_frames_never_hurt_the_node(bystander: Bystander, data: st.DataObject) -> None:
    stream = bytearray(handshake() + b"".join(framed(r) for r in VALID_REQUESTS))
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        i = data.draw(st.integers(0, len(stream) - 1), label="offset")
        stream[i] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(1, len(stream)), label="cut")
    blast(bystander.node, bytes(stream[:cut]), read_s=0.05)
    bystander.assert_undisturbed()
