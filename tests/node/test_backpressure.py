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
    members = [squall_node(tmp_path / f"n{i + 1}" / "data", port=c,
                           extra_args=["--id", str(i + 1), "--peers", peers, "--tick-ms", "1000"],
                           log_path=tmp_path / f"n{i + 1}.out") for i, (c, _) in enumerate(ports)]
    try:
        for m in members:
            m.start()
        check_bounded(members[0])
    finally:
        for m in members:
            m.kill()
