"""Apache ZooKeeper 3.8 (Debian's ``zookeeper`` package): the reference.

One ``zoo.cfg`` per node in its own directory. ``server.<myid>`` lines give
this node's own real quorum/election ports and, for every other node, the
addresses of the harness's proxies dedicated to the link (this -> other), so
that a partition is a matter of cutting proxies.

Timing (tuned for short test runs on a loaded 2-core machine):
``tickTime=1000`` ms; ``initLimit=10`` (10 s for a follower to sync: a JVM
that was just restarted needs a few seconds); ``syncLimit=5`` (a follower more
than 5 s behind is dropped, so paused followers leave the quorum quickly).
Session timeouts are clamped by the server to 2-20 s (2-20 x tickTime), which
fits kazoo clients with 3-5 s timeouts. The admin server (Jetty) is disabled:
it costs startup time and its port; the four-letter words are whitelisted
for readiness (``ruok``) and leadership (``srvr``'s Mode). The JVM uses the
serial GC and the C1 compiler only, which halves its start-up CPU.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from harness.backends.base import SetupError
from harness.dbs.base import SERVING_MODES, NodePorts, four_letter_word, parse_srvr

JAR_DIR = Path(os.environ.get("SQUALL_ZOOKEEPER_JARS", "/usr/share/java"))
CLASSPATH_JARS = ("zookeeper.jar", "servlet-api.jar", "slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
TICK_MS = 1000
INIT_LIMIT = 10
SYNC_LIMIT = 5


def zoo_cfg(index: int, all_nodes: list[str], node: str, ports: NodePorts, data_dir: Path) -> str:
    """The text of one node's zoo.cfg (pure: tested without a JVM)."""
    lines = [
        f"tickTime={TICK_MS}",
        f"initLimit={INIT_LIMIT}",
        f"syncLimit={SYNC_LIMIT}",
        f"dataDir={data_dir}",
        f"clientPort={ports.client}",
        "clientPortAddress=127.0.0.1",
        "admin.enableServer=false",
        "4lw.commands.whitelist=*",
        "maxClientCnxns=0",
        # 64 MB preallocated log segments are wasteful for short runs.
        "preAllocSize=4096",
        "autopurge.purgeInterval=0",
    ]
    if len(all_nodes) > 1:
        for i, other in enumerate(all_nodes, start=1):
            if other == node:
                host, peer, elect = "127.0.0.1", ports.peer, ports.election
            else:
                host, peer, elect = ports.peer_addresses[other]
            lines.append(f"server.{i}={host}:{peer}:{elect}")
    return "\n".join(lines) + "\n"


class ZooKeeperDB:
    name = "zookeeper"
    peer_kinds = ("peer", "election")

    def __init__(self, heap: str = "256m", java: str | None = None) -> None:
        self.heap = heap
        self.java = java or shutil.which("java") or "java"

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") when the jars and a JVM exist; else (False, why)."""
        missing = [str(JAR_DIR / j) for j in CLASSPATH_JARS if not (JAR_DIR / j).exists()]
        if missing:
            return False, f"missing {', '.join(missing)} (install Debian's zookeeper package)"
        if shutil.which("java") is None:
            return False, "no `java` on PATH (install a JRE, e.g. openjdk-17-jre-headless)"
        return True, ""

    def prepare(self, node: str, index: int, all_nodes: list[str], ports: NodePorts,
                data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        ok, why = self.available()
        if not ok:
            raise SetupError(f"cannot run Apache ZooKeeper: {why}")
        data = Path(data_dir) / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{index}\n")
        cfg = Path(data_dir) / "zoo.cfg"
        cfg.write_text(zoo_cfg(index, all_nodes, node, ports, data))
        classpath = ":".join(str(JAR_DIR / j) for j in CLASSPATH_JARS)
        argv = [self.java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.net.preferIPv4Stack=true",
                "-Dzookeeper.cnxTimeout=2000",  # election connect timeout (default 5 s)
                # ZooKeeper writes its first, empty snapshot (snapshot.0) without
                # an fsync; a power cut (the disk fault) can lose it while the
                # fsynced log survives, and 3.8 then refuses to start ("No snapshot
                # found, but there are log entries", ZOOKEEPER-3056). Trusting the
                # missing snapshot replays the whole log from an empty tree, which
                # is what that snapshot held. It changes nothing when no snapshot
                # file is lost.
                "-Dzookeeper.snapshot.trust.empty=true",
                "-cp", classpath, MAIN_CLASS, str(cfg)]
        return argv, {}, Path(data_dir) / f"{node}.log"

    def supported_node_counts(self) -> tuple[int, ...]:
        # ZooKeeper runs an ensemble of any size, even ones included (a quorum
        # is a strict majority); the harness's own bound is 9 nodes.
        return tuple(range(1, 10))

    def is_ready(self, address: str) -> bool:
        if four_letter_word(address, "ruok").strip() != "imok":
            return False
        return parse_srvr(four_letter_word(address, "srvr")).get("mode") in SERVING_MODES

    def leader(self, cluster: Any) -> str | None:
        """The node whose srvr says leader/standalone; if two claim it (an
        old leader not yet aware of a partition), the one with the highest
        zxid, i.e. the newest epoch."""
        best: tuple[int, str] | None = None
        for node in cluster.nodes:
            status = parse_srvr(four_letter_word(cluster.client_address(node), "srvr", 0.5))
            if status.get("mode") in ("leader", "standalone"):
                z = status.get("zxid") or 0
                if best is None or z > best[0]:
                    best = (z, node)
        return None if best is None else best[1]


def make(options: dict[str, Any] | None = None) -> ZooKeeperDB:
    options = options or {}
    return ZooKeeperDB(heap=str(options.get("heap", "256m")))
