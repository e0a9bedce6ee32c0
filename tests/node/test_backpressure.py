"""Backpressure: a client that never reads its replies cannot make the node hold its output.

A raw client pipelines 900 getData of a 1 MB znode and reads nothing. The
node must stop handling that connection's requests once it holds about
2 x jute.maxbuffer of output for it, so its resident memory grows by far less
than the 900 MB those replies weigh (the bound asserted: 64 MB), and another
client on the same server is served meanwhile (asserted: its reads succeed;
their latency is bench/backpressure.py's figure, not an assertion). Both
shells: a standalone node and a member of a 3-member ensemble, as processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests.node.servers import ServerProcess, free_port, rss_bytes, squall_node, unread_flood

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

VALUE_BYTES = 1_000_000
REQUESTS = 900
RSS_BOUND = 64 << 20
WATCH_S = 5.0


def check_bounded(m: ServerProcess) -> None:
    zk = KazooClient(hosts=m.address, timeout=10, connection_retry={"max_tries": -1, "delay": 0.05})
    zk.start(timeout=30)
    try:
        zk.create("/big", b"x" * VALUE_BYTES)
        zk.create("/small", b"s")
        assert m.proc is not None
        base = rss_bytes(m.proc.pid)
        sock = unread_flood(m.host, m.port, "/big", REQUESTS)
        try:
            peak, reads = base, 0
            end = time.monotonic() + WATCH_S
            while time.monotonic() < end:
                assert zk.get("/small")[0] == b"s"  # another client is served meanwhile
                reads += 1
                peak = max(peak, rss_bytes(m.proc.pid))
                time.sleep(0.02)
            assert reads > 0
            grown = peak - base
            assert grown < RSS_BOUND, f"the node grew by {grown >> 20} MB for a client that does not read"
        finally:
            sock.close()
        assert zk.get("/small")[0] == b"s"  # and the server is fine after the reader went away
    finally:
        zk.stop()
        zk.close()


def test_standalone_output_for_a_client_that_does_not_read_is_bounded(tmp_path: Path) -> None:
    m = squall_node(tmp_path / "d", extra_args=["--tick-ms", "1000"])
    try:
        m.start()
        check_bounded(m)
    finally:
        m.kill()


def test_ensemble_member_output_for_a_client_that_does_not_read_is_bounded(tmp_path: Path) -> None:
    ports = [(free_port(), free_port()) for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{c}:{p}" for i, (c, p) in enumerate(ports))
    members = [
        squall_node(
            tmp_path / f"n{i + 1}" / "data",
            port=c,
            extra_args=["--id", str(i + 1), "--peers", peers, "--tick-ms", "1000"],
            log_path=tmp_path / f"n{i + 1}.out",
        )
        for i, (c, _) in enumerate(ports)
    ]
    try:
        for m in members:
            m.start()
        check_bounded(members[0])
    finally:
        for m in members:
            m.kill()


@pytest.mark.parametrize("ensemble", [False, True], ids=["standalone", "ensemble"])
def test_a_stalled_client_that_reads_again_gets_every_reply_in_order(tmp_path: Path, ensemble: bool) -> None:
    """More pipelined reads than the ensemble's queue bound (MAX_PARKED), each reply 200 kB:
    the connection stalls on output, and once the client reads, every reply comes, in order."""
    import struct

    from node.config import NodeConfig
    from node.server import BackgroundNode

    port = free_port()
    peers = f"1=127.0.0.1:{port}:{free_port()}" if ensemble else ""
    cfg = NodeConfig(data_dir=tmp_path / "d", host="127.0.0.1", port=port, tick_ms=100, peers=peers).validate()
    requests = 1500
    with BackgroundNode(cfg) as n:
        zk = KazooClient(hosts=n.hosts, timeout=10)
        zk.start(timeout=20)
        try:
            zk.create("/mid", b"m" * 200_000)
            sock = unread_flood(n.host, n.port, "/mid", requests)
            try:
                time.sleep(1.0)  # the node fills its bound and stalls this connection
                sock.settimeout(30)
                buf, xids = b"", []
                while len(xids) < requests:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        break
                    buf += chunk
                    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from(">i", buf)[0]:
                        n_ = struct.unpack_from(">i", buf)[0]
                        xid, _zxid, err = struct.unpack_from(">iqi", buf, 4)
                        assert err == 0
                        xids.append(xid)
                        buf = buf[4 + n_ :]
            finally:
                sock.close()
            assert xids == list(range(1, requests + 1))
            assert zk.get("/mid")[1].dataLength == 200_000
        finally:
            zk.stop()
            zk.close()
