"""etcd's pure parts and the proxies' Unix sockets (no etcd needed):
gateway replies and errors, watch lines, and the Unix-socket links that give
etcd's members one peer URL each while every link is a proxy of its own."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from harness.backends.proxy import ProxyMesh
from harness.dbs import etcd_gateway as gw


def test_prefix_end_covers_exactly_the_prefix():
    assert gw.prefix_end("/squall/watch/") == b"/squall/watch0"
    assert gw.prefix_end("a\xff") == b"a\xc3\xc0"  # by bytes: "\xff" is c3 bf in UTF-8


def test_base64_round_trip_and_revision():
    assert gw.unb64(gw.b64("/squall/register/3")) == "/squall/register/3"
    assert gw.revision_of({"header": {"revision": "42"}}) == 42
    assert gw.revision_of({}) is None


@pytest.mark.parametrize(
    "message, kind",
    [
        ("etcdserver: requested lease not found", gw.Refused),
        ("etcdserver: no leader", gw.Refused),
        ("etcdserver: too many requests", gw.Refused),
        ("etcdserver: request timed out", gw.Indeterminate),
        ("etcdserver: leader changed", gw.Indeterminate),
        ("context deadline exceeded", gw.Indeterminate),
    ],
)
def test_server_errors_are_definite_only_when_nothing_was_applied(message, kind):
    assert gw.classify(message) is kind


def test_error_text_reads_the_gateway_body():
    assert gw.error_text(503, '{"error":"etcdserver: no leader","code":14}') == "etcdserver: no leader"
    assert gw.error_text(500, "not json").startswith("HTTP 500")


def test_parse_watch_lines():
    created = b'{"result":{"header":{"revision":"7"},"created":true}}'
    assert gw.parse_watch_line(created) == ("created", 7)
    events = json.dumps(
        {
            "result": {
                "header": {"revision": "9"},
                "events": [
                    {"kv": {"key": gw.b64("/w/k0"), "value": gw.b64("12"), "mod_revision": "8"}},
                    {"type": "DELETE", "kv": {"key": gw.b64("/w/k1"), "mod_revision": "9"}},
                ],
            }
        }
    )
    assert gw.parse_watch_line(events) == ("events", [(8, "/w/k0", "12", "PUT"), (9, "/w/k1", "", "DELETE")], 9)
    assert gw.parse_watch_line('{"result":{"header":{"revision":"10"}}}') == ("progress", 10)
    compacted = '{"result":{"header":{"revision":"10"},"canceled":true,"compact_revision":"5"}}'
    assert gw.parse_watch_line(compacted)[0] == "canceled" and gw.parse_watch_line(compacted)[2] == 5
    assert gw.parse_watch_line('{"error":{"grpc_code":14,"message":"etcdserver: no leader"}}')[0] == "canceled"
    with pytest.raises(ValueError):
        gw.parse_watch_line("[1, 2]")


def test_a_refused_connection_is_not_sent_and_the_client_moves_on():
    port = _free_port()
    g = gw.Gateway([f"127.0.0.1:{port}", "127.0.0.1:1"], timeout_s=1.0)
    with pytest.raises(gw.NotSent):
        g.put("/k", "v")
    assert g.endpoint == "127.0.0.1:1"
    g.close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _echo_server(path: str) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(100)
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return srv


def _ask(path: str, text: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(5)
        c.connect(path)
        c.sendall(text)
        return c.recv(100)


@pytest.mark.parametrize("deep", [False, True])
def test_unix_links_forward_drop_heal_and_clean_up(tmp_path, deep):
    # deep: paths longer than a socket address (reached through /proc/self/fd)
    root = tmp_path / ("x" * 60 if deep else "r") / ("y" * 40 if deep else "s")
    (root / "n1").mkdir(parents=True)
    (root / "n2").mkdir()
    target, listen = root / "n2" / "peer-n2:2380", root / "n1" / "peer-n2:2380"
    fd = os.open(root / "n2", os.O_PATH | os.O_DIRECTORY)
    srv = _echo_server(f"/proc/self/fd/{fd}/peer-n2:2380")
    mesh = ProxyMesh()
    try:
        assert mesh.add_unix("n1", "n2", "peer", str(target), str(listen)) == str(listen)
        assert mesh.socket_paths() == [str(listen)] and mesh.ports() == []
        assert listen.is_socket()
        lfd = os.open(root / "n1", os.O_PATH | os.O_DIRECTORY)
        try:
            via = f"/proc/self/fd/{lfd}/peer-n2:2380"  # as member n1 dials it: relative to its own directory
            assert _ask(via, b"hello") == b"HELLO"
            mesh.drop("n1", "n2")
            with pytest.raises(OSError):
                assert _ask(via, b"hello") == b""
            mesh.heal()
            assert _ask(via, b"again") == b"AGAIN"
        finally:
            os.close(lfd)
    finally:
        mesh.close()
        srv.close()
        os.close(fd)
    assert not listen.exists(), "the proxy's socket file is removed when the mesh closes"
