"""The kazoo probe against 3-member ensembles: squall's and Apache ZooKeeper 3.8's, in the same run.

For each kind of server this starts a fresh 3-member ensemble on loopback,
waits for a leader, and then:

1. runs ``bench/node.py``'s probe (sync sets, sync gets, async sets, async
   gets; ``--ops`` each, default 2,000, 100-byte values) through one kazoo
   client connected to a **follower** (so writes take the forwarding path,
   as they do for most clients of a real ensemble);
2. measures failover: a client holding all three addresses writes in a
   loop, the leader is SIGKILLed, and the time from the kill to the next
   acknowledged write is the figure (``--failovers`` repetitions, the kill
   victim restarted between them; the median is reported);
3. measures *silent* failover the same way, but the leader is SIGSTOPped
   instead (a hung process or a cut network: its sockets stay open, so the
   others notice only by their timeouts); it is SIGCONTed afterwards. A killed
   process's kernel closes its connections at once, which a member may use as
   a hint (squall does, see docs/protocol.md); a paused one gives no hint.

The ratio column is squall / ZooKeeper (>= 1.0 means squall is at least as
fast; for failover, ZooKeeper's time / squall's time). Every process is
killed at the end, on error and on Ctrl-C too.

Usage::

    python bench/ensemble.py [--ops 2000] [--failovers 3] [--skip-zookeeper] [--skip-squall]
"""

from __future__ import annotations

import argparse
import logging
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from kazoo.client import KazooClient  # noqa: E402

from bench.node import FIGURES, probe  # noqa: E402
from tests.node.servers import (  # noqa: E402
    ZOOKEEPER_CLASSPATH,
    ZOOKEEPER_SUPER_DIGEST,
    ServerProcess,
    free_port,
    server_mode,
    squall_node,
    zookeeper_installed,
)

ZK_REFERENCE_3 = {
    "sync set": 564,
    "sync get": 2977,
    "async set": 2614,
    "async get": 5001,
    "failover s": 0.60,
    "silent fo s": None,
}  # not in the reference figures
FAILOVERS = ("failover s", "silent fo s")
DEADLINE_S = 60.0


def squall_ensemble(base: Path) -> list[ServerProcess]:
    ports = [(free_port(), free_port()) for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{c}:{p}" for i, (c, p) in enumerate(ports))
    return [
        squall_node(
            base / f"n{i + 1}" / "data",
            port=c,
            extra_args=["--id", str(i + 1), "--peers", peers, "--tick-ms", "2000"],
            log_path=base / f"n{i + 1}.out",
        )
        for i, (c, _) in enumerate(ports)
    ]


def zookeeper_ensemble(base: Path) -> list[ServerProcess]:
    """Three QuorumPeerMain processes, configured as /work/shared/reference/zookeeper.md section 4 says."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    servers = [f"server.{i + 1}=127.0.0.1:{q}:{e}" for i, (_, q, e) in enumerate(ports)]
    out = []
    for i, (client, _, _) in enumerate(ports):
        d = base / f"zk{i + 1}"
        data = d / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{i + 1}\n")
        cfg = d / "zoo.cfg"
        cfg.write_text(
            "\n".join(
                [
                    "tickTime=2000",
                    f"dataDir={data}",
                    f"clientPort={client}",
                    "clientPortAddress=127.0.0.1",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=*",
                    "maxClientCnxns=0",
                    "initLimit=10",
                    "syncLimit=5",
                    *servers,
                    "",
                ]
            )
        )
        argv = [
            "java",
            "-Xmx512m",
            f"-Dzookeeper.DigestAuthenticationProvider.superDigest={ZOOKEEPER_SUPER_DIGEST}",
            "-cp",
            ZOOKEEPER_CLASSPATH,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(cfg),
        ]
        out.append(
            ServerProcess(
                kind="zookeeper",
                host="127.0.0.1",
                port=client,
                data_dir=data,
                argv=argv,
                log_path=d / "server.log",
                cwd=d,
            )
        )
    return out


def start_all(members: list[ServerProcess]) -> None:
    """Start the members in parallel: a ZooKeeper member may not answer before it has a quorum."""
    errors: list[BaseException] = []

    def start(m: ServerProcess) -> None:
        try:
            m.start(timeout=DEADLINE_S)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def wait_leader(members: list[ServerProcess]) -> ServerProcess:
    deadline = time.monotonic() + DEADLINE_S
    modes: list[str] = []
    while time.monotonic() < deadline:
        up = [m for m in members if m.running]
        modes = [server_mode(m) for m in up]
        if modes.count("leader") == 1 and all(x in ("leader", "follower") for x in modes):
            return up[modes.index("leader")]
        time.sleep(0.05)
    raise RuntimeError(f"no leader within {DEADLINE_S}s: {modes}")


def failover_once(members: list[ServerProcess], pause: bool = False) -> float:
    """Seconds from SIGKILL (or, with ``pause``, SIGSTOP) of the leader to the next
    acknowledged write; then the victim restarts (or continues) and rejoins.

    One write is outstanding at a time: kazoo counts every request as a ping,
    so a loop that kept sending new ones would keep a connection to a paused
    server looking alive forever. For the silent case the client knows only
    the other two members, so the figure is the ensemble's (electing a new
    leader and committing through it), not kazoo's time to give up on a
    paused server (which is the same for both servers and only a client
    setting)."""
    leader = wait_leader(members)
    hosts = [m for m in members if not (pause and m is leader)]
    client = KazooClient(
        hosts=",".join(m.address for m in hosts),
        timeout=10.0,
        connection_retry={"max_tries": -1, "delay": 0.02, "max_delay": 0.2},
    )
    client.start(timeout=DEADLINE_S)
    waited_out = client.handler.timeout_exception
    try:
        client.ensure_path("/failover")
        client.set("/failover", b"before")
        if pause:
            leader._signal_group(signal.SIGSTOP)
        else:
            leader.kill()
        killed = time.monotonic()
        pending = None
        while True:
            if time.monotonic() - killed > DEADLINE_S:
                raise RuntimeError(f"no write succeeded within {DEADLINE_S}s of losing the leader")
            if pending is None:
                pending = client.set_async("/failover", b"after")
            try:
                pending.get(timeout=0.5)
                took = time.monotonic() - killed
                break
            except waited_out:
                continue  # still outstanding: keep waiting for this one
            except Exception:  # failed (connection loss, ...): send another
                pending = None
                time.sleep(0.005)
    finally:
        if pause:
            leader._signal_group(signal.SIGCONT)
        client.stop()
        client.close()
    if not pause:
        leader.restart(timeout=DEADLINE_S)
    wait_leader(members)
    return took


def measure(kind: str, members: list[ServerProcess], ops: int, value_bytes: int, failovers: int) -> dict[str, float]:
    start_all(members)
    leader = wait_leader(members)
    follower = next(m for m in members if m is not leader)
    print(f"{kind}: leader {leader.address}, probing through follower {follower.address} ...", file=sys.stderr)
    figures = dict(probe(follower.address, ops, value_bytes).ops_per_s)
    print("    " + ", ".join(f"{f} {figures[f]:,.0f}/s" for f in FIGURES), file=sys.stderr)
    times = []
    for i in range(failovers):
        t = failover_once(members)
        print(f"    failover {i + 1}/{failovers}: {t:.3f} s", file=sys.stderr)
        times.append(t)
    figures["failover s"] = statistics.median(times)
    times = []
    for i in range(failovers):
        t = failover_once(members, pause=True)
        print(f"    silent failover {i + 1}/{failovers}: {t:.3f} s", file=sys.stderr)
        times.append(t)
    figures["silent fo s"] = statistics.median(times)
    return figures


def table(results: dict[str, dict[str, float]], ops: int, value_bytes: int, failovers: int) -> str:
    names = list(results)
    both = "squall" in results and "zookeeper" in results
    rows = [
        f"3-member ensembles: {ops} ops per figure, {value_bytes}-byte values, through a follower; "
        f"failover = median of {failovers} leader SIGKILLs (silent: SIGSTOPs)",
        f"{'':<12}" + "".join(f"{n:>12}" for n in names) + (f"{'ratio':>8}" if both else "") + f"{'ZK ref':>9}",
    ]
    for fig in (*FIGURES, *FAILOVERS):
        fmt = "{:>12.3f}" if fig in FAILOVERS else "{:>12,.0f}"
        row = f"{fig:<12}" + "".join(fmt.format(results[n][fig]) for n in names)
        if both:
            s, z = results["squall"][fig], results["zookeeper"][fig]
            ratio = (z / s if s else float("inf")) if fig in FAILOVERS else (s / z if z else float("inf"))
            row += f"{ratio:>7.2f}x"
        ref = ZK_REFERENCE_3[fig]
        row += f"{'-' if ref is None else ref:>9}"
        rows.append(row)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per figure (default 2000)")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size in bytes (default 100)")
    parser.add_argument("--failovers", type=int, default=3, help="leader kills per ensemble (default 3)")
    parser.add_argument("--skip-zookeeper", action="store_true", help="do not run Apache ZooKeeper")
    parser.add_argument("--skip-squall", action="store_true", help="do not run squall")
    args = parser.parse_args(argv)
    logging.getLogger("kazoo.client").setLevel(logging.CRITICAL)
    if not 1 <= args.ops <= 100_000:
        parser.error(f"--ops {args.ops} is out of range; allowed: 1..100000")
    if not 1 <= args.failovers <= 20:
        parser.error(f"--failovers {args.failovers} is out of range; allowed: 1..20")
    results: dict[str, dict[str, float]] = {}
    started: list[ServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="squall-ens-bench-") as tmp:
        try:
            kinds = []
            if not args.skip_squall:
                kinds.append(("squall", squall_ensemble(Path(tmp) / "squall")))
            if args.skip_zookeeper:
                pass
            elif not zookeeper_installed():
                print("Debian's zookeeper package is not installed: no ZooKeeper comparison", file=sys.stderr)
            else:
                kinds.append(("zookeeper", zookeeper_ensemble(Path(tmp) / "zookeeper")))
            for kind, members in kinds:
                started.extend(members)
                try:
                    results[kind] = measure(kind, members, args.ops, args.value_bytes, args.failovers)
                finally:
                    for m in members:  # one ensemble at a time: they do not compete for the 2 CPUs
                        m.kill()
        finally:
            for m in started:
                m.kill()
    if not results:
        print("nothing was measured", file=sys.stderr)
        return 3
    print(table(results, args.ops, args.value_bytes, args.failovers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
