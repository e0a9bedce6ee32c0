"""A client that never reads: memory of the server and latency of another client, squall vs ZooKeeper.

For each server (squall standalone, a member of a 3-member squall ensemble,
Apache ZooKeeper 3.8 standalone when installed) this creates a 1 MB znode,
then a raw client pipelines ``--requests`` (default 900) getData of it and
never reads a reply, while a second client (kazoo) reads a small znode one
request at a time for ``--seconds`` (default 5). Printed: the server's RSS
growth (peak during the flood minus before it; target < 64 MB) and the second
client's p50/p99 read latency during the flood next to the same figure
without a flood (target p99 < 50 ms). Every process is killed at the end, on
error and on Ctrl-C too.

Usage::

    python bench/backpressure.py [--requests 900] [--seconds 5] [--skip-zookeeper] [--skip-ensemble]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from kazoo.client import KazooClient  # noqa: E402

from bench.ensemble import squall_ensemble, start_all, wait_leader  # noqa: E402
from tests.node.servers import (  # noqa: E402
    ServerProcess,
    rss_bytes,
    squall_node,
    unread_flood,
    zookeeper_installed,
    zookeeper_standalone,
)

VALUE_BYTES = 1_000_000


def reads(zk: KazooClient, seconds: float, pid: int) -> tuple[list[float], int]:
    """Latencies (s) of one-at-a-time reads for ``seconds``, and the peak RSS of ``pid`` meanwhile."""
    lat: list[float] = []
    peak = rss_bytes(pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        zk.get("/small")
        lat.append(time.perf_counter() - t)
        if len(lat) % 10 == 0:
            peak = max(peak, rss_bytes(pid))
    return lat, max(peak, rss_bytes(pid))


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) >= 2 else values[0]


def measure(m: ServerProcess, requests: int, seconds: float) -> dict[str, float]:
    assert m.proc is not None
    zk = KazooClient(hosts=m.address, timeout=30, connection_retry={"max_tries": -1, "delay": 0.05})
    zk.start(timeout=60)
    try:
        zk.create("/big", b"x" * VALUE_BYTES)
        zk.create("/small", b"s")
        quiet, _ = reads(zk, min(seconds, 2.0), m.proc.pid)
        base = rss_bytes(m.proc.pid)
        sock = unread_flood(m.host, m.port, "/big", requests)
        try:
            loaded, peak = reads(zk, seconds, m.proc.pid)
        finally:
            sock.close()
    finally:
        zk.stop()
        zk.close()
    return {
        "rss MB": (peak - base) / 2**20,
        "p50 ms": pct(loaded, 50) * 1e3,
        "p99 ms": pct(loaded, 99) * 1e3,
        "quiet p99 ms": pct(quiet, 99) * 1e3,
        "reads": float(len(loaded)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=900, help="pipelined unread getData (default 900)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the other client reads (default 5)")
    parser.add_argument("--skip-zookeeper", action="store_true")
    parser.add_argument("--skip-ensemble", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000:
        parser.error(f"--requests {args.requests} is out of range; allowed: 1..100000")
    if not 0.5 <= args.seconds <= 600:
        parser.error(f"--seconds {args.seconds} is out of range; allowed: 0.5..600")
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="squall-backpressure-bench-") as tmp:
        base = Path(tmp)
        m = squall_node(base / "standalone" / "data", extra_args=["--tick-ms", "1000"])
        try:
            m.start()
            rows["squall standalone"] = measure(m, args.requests, args.seconds)
        finally:
            m.kill()
        if not args.skip_ensemble:
            members = squall_ensemble(base / "ensemble")
            try:
                start_all(members)
                leader = wait_leader(members)
                follower = next(x for x in members if x is not leader)
                rows["squall ensemble follower"] = measure(follower, args.requests, args.seconds)
            finally:
                for x in members:
                    x.kill()
        if args.skip_zookeeper:
            pass
        elif not zookeeper_installed():
            print("Debian's zookeeper package is not installed: no ZooKeeper comparison", file=sys.stderr)
        else:
            z = zookeeper_standalone(base / "zookeeper")
            try:
                z.start()
                rows["zookeeper"] = measure(z, args.requests, args.seconds)
            finally:
                z.kill()
    cols = ("rss MB", "p50 ms", "p99 ms", "quiet p99 ms", "reads")
    print(f"{args.requests} pipelined getData of a 1 MB znode, never read; another client reads for {args.seconds:g} s")
    print(f"{'server':26}" + "".join(f"{c:>14}" for c in cols))
    for name, r in rows.items():
        print(f"{name:26}" + "".join(f"{r[c]:>14.1f}" for c in cols))
    print("targets: rss growth < 64 MB, p99 during the flood < 50 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
