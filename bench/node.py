"""The kazoo probe: squall's node against Apache ZooKeeper 3.8 standalone.

Four figures per server, each over ``--ops`` operations (default 2,000) on
100-byte values spread over 100 znodes:

- sync set: ``client.set`` one after another (each waits for its reply, so
  this measures the write path's latency, fsync included);
- sync get: ``client.get`` one after another;
- async set / async get: ``set_async`` / ``get_async`` all issued at once
  (pipelined on one connection), then every result awaited.

The node is started from this checkout (``python -m harness.cli node``) on a
fresh data dir; Apache ZooKeeper is started too when Debian's ``zookeeper``
package is installed, in the same run, so both see the same machine load.
The ratio column is squall / ZooKeeper (the target is >= 1.0 on each).
Every server is stopped at the end, on error and on Ctrl-C too.

Usage::

    python bench/node.py [--ops 2000] [--rounds 1] [--value-bytes 100] [--skip-zookeeper] [--skip-squall]
    python bench/node.py --squall-address 127.0.0.1:2181   # an already-running node
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from kazoo.client import KazooClient  # noqa: E402

from tests.node.servers import ServerProcess, squall_node, zookeeper_installed, zookeeper_standalone  # noqa: E402

FIGURES = ("sync set", "sync get", "async set", "async get")
KEYS = 100
# ZooKeeper 3.8 standalone on the project's 2-vCPU reference VM (docs: reference notes)
ZK_REFERENCE = {"sync set": "1100-2100", "sync get": "4100-5100", "async set": "5500-8100", "async get": "6500-8900"}


@dataclass
class ProbeResult:
    ops_per_s: dict[str, float]


def _timed(fn, ops: int) -> float:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return ops / elapsed if elapsed > 0 else float("inf")


def probe(address: str, ops: int, value_bytes: int, timeout_s: float = 10.0) -> ProbeResult:
    """Run the four figures against one server through one kazoo client."""
    client = KazooClient(hosts=address, timeout=timeout_s)
    client.start(timeout=timeout_s)
    root = f"/bench-{uuid.uuid4().hex[:8]}"
    paths = [f"{root}/k{i:03d}" for i in range(KEYS)]
    value = b"v" * value_bytes
    try:
        client.create(root)
        for p in paths:
            client.create(p, value)
        warmup = min(200, ops)
        for i in range(warmup):  # connections, JITs and caches warm before timing
            client.set(paths[i % KEYS], value)
            client.get(paths[i % KEYS])

        def sync_set() -> None:
            for i in range(ops):
                client.set(paths[i % KEYS], value)

        def sync_get() -> None:
            for i in range(ops):
                client.get(paths[i % KEYS])

        def async_set() -> None:
            pending = [client.set_async(paths[i % KEYS], value) for i in range(ops)]
            for r in pending:
                r.get(timeout=timeout_s * 6)

        def async_get() -> None:
            pending = [client.get_async(paths[i % KEYS]) for i in range(ops)]
            for r in pending:
                r.get(timeout=timeout_s * 6)

        figures = dict(zip(FIGURES, (_timed(f, ops) for f in (sync_set, sync_get, async_set, async_get)), strict=True))
        client.delete(root, recursive=True)
        return ProbeResult(figures)
    finally:
        client.stop()
        client.close()


def _table(results: dict[str, ProbeResult], ops: int, value_bytes: int, rounds: int) -> str:
    names = list(results)
    header = f"{'ops/s':<10}" + "".join(f"{n:>12}" for n in names)
    both = "squall" in results and "zookeeper" in results
    if both:
        header += f"{'ratio':>8}"
    header += f"{'ZK reference':>15}"
    lines = [
        f"kazoo probe: {ops} ops per figure, {value_bytes}-byte values, {KEYS} znodes, best of {rounds} round(s)",
        header,
    ]
    for fig in FIGURES:
        row = f"{fig:<10}" + "".join(f"{results[n].ops_per_s[fig]:>12,.0f}" for n in names)
        if both:
            ratio = results["squall"].ops_per_s[fig] / results["zookeeper"].ops_per_s[fig]
            row += f"{ratio:>7.2f}x"
        row += f"{ZK_REFERENCE[fig]:>15}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per figure (default 2000)")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size in bytes (default 100)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="probe each server this many times, alternating; report the best"
    )
    parser.add_argument("--skip-zookeeper", action="store_true", help="do not run Apache ZooKeeper")
    parser.add_argument("--skip-squall", action="store_true", help="do not run the squall node")
    parser.add_argument("--squall-address", help="probe this running node instead of starting one")
    parser.add_argument("--node-arg", action="append", default=[], help="extra argument for `squall node` (repeatable)")
    args = parser.parse_args(argv)
    # kazoo warns "Connection dropped" when a server closes the socket after closeSession
    logging.getLogger("kazoo.client").setLevel(logging.ERROR)
    if not 1 <= args.ops <= 1_000_000:
        parser.error(f"--ops {args.ops} is out of range; allowed: 1..1000000")
    if not 1 <= args.rounds <= 20:
        parser.error(f"--rounds {args.rounds} is out of range; allowed: 1..20")
    if not 0 <= args.value_bytes <= 1_000_000:
        parser.error(f"--value-bytes {args.value_bytes} is out of range; allowed: 0..1000000")

    results: dict[str, ProbeResult] = {}
    servers: list[ServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
        try:
            targets: dict[str, str] = {}  # name -> address
            if not args.skip_squall:
                if args.squall_address:
                    targets["squall"] = args.squall_address
                else:
                    node = squall_node(Path(tmp) / "squall" / "data", extra_args=args.node_arg)
                    servers.append(node)
                    targets["squall"] = node.start().address
            if args.skip_zookeeper:
                pass
            elif not zookeeper_installed():
                print("Debian's zookeeper package is not installed: no ZooKeeper comparison", file=sys.stderr)
            else:
                zk = zookeeper_standalone(Path(tmp) / "zookeeper")
                servers.append(zk)
                targets["zookeeper"] = zk.start().address
            # rounds alternate between the servers, so a burst of load from
            # elsewhere on the machine does not land on one server only
            for round_no in range(args.rounds):
                for name, address in targets.items():
                    print(f"round {round_no + 1}/{args.rounds}: {name} on {address} ...", file=sys.stderr)
                    r = probe(address, args.ops, args.value_bytes)
                    print("    " + ", ".join(f"{fig} {r.ops_per_s[fig]:,.0f}/s" for fig in FIGURES), file=sys.stderr)
                    best = results.setdefault(name, r)
                    for fig in FIGURES:
                        best.ops_per_s[fig] = max(best.ops_per_s[fig], r.ops_per_s[fig])
        finally:
            for server in servers:
                server.kill()
    if not results:
        print("nothing was measured (both servers skipped)", file=sys.stderr)
        return 3
    print(_table(results, args.ops, args.value_bytes, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
