"""Restart time against log length: squall's node and Apache ZooKeeper 3.8, in one run.

For each log size (default 10,000, 50,000 and 200,000 records) and each
server this starts a fresh server with snapshots effectively off
(``snapCount`` 10,000,000 on both, so the restart replays every record),
writes that many ``setData`` of ``--value-bytes`` on one znode (pipelined,
through kazoo), SIGKILLs the server (a crash: nothing is flushed or
snapshotted on the way out) and starts it again on the same data dir. The
figure is the time from starting the process to the first client ``get``
that sees the last write's version, on that server: from start to serving.

Servers: the squall node standalone; one member of a 3-member squall ensemble
(a follower is killed and restarted while the other two keep serving); Apache
ZooKeeper standalone when Debian's ``zookeeper`` package is installed. The
ratio column is squall / ZooKeeper time (the target is <= 2.0). Every process
is killed at the end, on error and on Ctrl-C too.

Usage::

    python bench/recovery.py [--sizes 10000,50000,200000] [--value-bytes 100] [--skip-zookeeper]
                             [--skip-ensemble] [--skip-standalone]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from kazoo.client import KazooClient  # noqa: E402

from bench.ensemble import squall_ensemble, start_all, wait_leader  # noqa: E402
from tests.node.servers import (  # noqa: E402
    ServerProcess,
    server_mode,
    squall_node,
    zookeeper_installed,
    zookeeper_standalone,
)

SNAP_OFF = "10000000"  # snapCount: far above every size, so the log holds every record
WINDOW = 1000  # pipelined writes in flight
DEADLINE_S = 900.0
PATH = "/recovery"


def write_log(address: str, records: int, value: bytes) -> None:
    """``records`` setData on PATH through one client (pipelined ``WINDOW`` at a time)."""
    zk = KazooClient(hosts=address, timeout=30)
    zk.start(timeout=60)
    try:
        zk.ensure_path(PATH)
        done = 0
        while done < records:
            n = min(WINDOW, records - done)
            for r in [zk.set_async(PATH, value) for _ in range(n)]:
                r.get(timeout=120)
            done += n
    finally:
        zk.stop()
        zk.close()


def served(address: str, version: int, deadline: float) -> None:
    """Return once a client of ``address`` alone reads PATH at ``version``."""
    last: object = None
    while time.monotonic() < deadline:
        zk = KazooClient(hosts=address, timeout=10, connection_retry={"max_tries": 0})
        try:
            zk.start(timeout=5)
            stat = zk.get(PATH)[1]
            if stat.version >= version:
                return
            last = f"version {stat.version} < {version}"
        except Exception as exc:  # noqa: BLE001 - not serving yet
            last = exc
        finally:
            try:
                zk.stop()
                zk.close()
            except Exception:  # noqa: BLE001
                pass
        time.sleep(0.02)
    raise RuntimeError(f"{address} did not serve version {version} before the deadline: {last!r}")


def restart_time(m: ServerProcess, version: int, ready_check=None) -> float:
    m.kill()
    start = time.monotonic()
    m.start(timeout=DEADLINE_S)
    if ready_check is not None:
        ready_check(start + DEADLINE_S)
    served(m.address, version, start + DEADLINE_S)
    return time.monotonic() - start


def standalone(kind: str, base: Path, records: int, value: bytes) -> float:
    if kind == "zookeeper":
        m = zookeeper_standalone(base, extra_config={"snapCount": SNAP_OFF})
    else:
        m = squall_node(base / "data", extra_args=["--snapshot-every", SNAP_OFF])
    try:
        m.start(timeout=DEADLINE_S)
        write_log(m.address, records, value)
        return restart_time(m, records)
    finally:
        m.kill()


def ensemble_member(base: Path, records: int, value: bytes) -> float:
    members = squall_ensemble(base)
    for m in members:
        m.argv += ["--snapshot-every", SNAP_OFF]
    try:
        start_all(members)
        leader = wait_leader(members)
        write_log(leader.address, records, value)
        victim = next(m for m in members if m is not leader)

        def is_member(deadline: float) -> None:
            while time.monotonic() < deadline and server_mode(victim) not in ("leader", "follower"):
                time.sleep(0.02)

        return restart_time(victim, records, is_member)
    finally:
        for m in members:
            m.kill()


def table(sizes: list[int], rows: dict[str, dict[int, float]]) -> str:
    kinds = list(rows)
    head = f"{'records':>9} " + " ".join(f"{k:>22}" for k in kinds)
    zk = rows.get("zookeeper")
    if zk:
        head += "  " + " ".join(f"{'ratio ' + k.split()[-1]:>16}" for k in kinds if k != "zookeeper")
    lines = ["restart: seconds from process start to the first read of the last write (lower is better)", head]
    for n in sizes:
        line = f"{n:>9} " + " ".join(f"{rows[k][n]:>22.2f}" for k in kinds)
        if zk:
            line += "  " + " ".join(f"{rows[k][n] / zk[n]:>16.2f}" for k in kinds if k != "zookeeper")
        lines.append(line)
    if zk:
        lines.append("ratio = squall time / ZooKeeper standalone time (target <= 2.0)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,200000", help="log sizes in records, comma-separated")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size in bytes (default 100)")
    parser.add_argument("--skip-zookeeper", action="store_true")
    parser.add_argument("--skip-standalone", action="store_true", help="no squall standalone node")
    parser.add_argument("--skip-ensemble", action="store_true", help="no squall ensemble member")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: expected comma-separated record counts such as 10000,50000")
    if not sizes or any(not 1 <= n <= 10_000_000 for n in sizes):
        parser.error(f"--sizes {args.sizes!r}: each size must be 1..10000000")
    if not 0 <= args.value_bytes <= 1 << 20:
        parser.error(f"--value-bytes {args.value_bytes} is out of range; allowed: 0..1048576")
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    value = b"v" * args.value_bytes
    kinds: list[str] = []
    if not args.skip_standalone:
        kinds.append("squall standalone")
    if not args.skip_ensemble:
        kinds.append("squall ensemble member")
    if args.skip_zookeeper:
        pass
    elif not zookeeper_installed():
        print("Debian's zookeeper package is not installed: no ZooKeeper comparison", file=sys.stderr)
    else:
        kinds.append("zookeeper")
    if not kinds:
        parser.error("everything was skipped: nothing to measure")
    rows: dict[str, dict[int, float]] = {k: {} for k in kinds}
    with tempfile.TemporaryDirectory(prefix="squall-recovery-bench-") as tmp:
        for n in sizes:
            for k in kinds:
                base = Path(tmp) / f"{k.replace(' ', '-')}-{n}"
                if k == "squall ensemble member":
                    rows[k][n] = ensemble_member(base, n, value)
                else:
                    rows[k][n] = standalone("zookeeper" if k == "zookeeper" else "squall", base, n, value)
                print(f"{k}, {n} records: restart {rows[k][n]:.2f} s", file=sys.stderr, flush=True)
    print(table(sizes, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
