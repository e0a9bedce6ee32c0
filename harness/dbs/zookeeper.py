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
for status (``srvr``'s Mode and Zxid; ``harness/dbs/zk/``, shared with the
squall node, as are the kazoo clients). The JVM uses the serial GC and the
C1 compiler only, which halves its start-up CPU. On a host of its own (a
container, an SSH host) a node listens on every interface and names itself
by its host name in its own ``server.N`` line (``quorumListenOnAllIPs``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from harness.dbs.base import DBBase, HostNeeds, NodeContext, NodeLaunch, SetupError
from harness.dbs.zk import SNAP_COUNT, ZooKeeperProtocol

DEBIAN_JAR_DIR = Path("/usr/share/java")
JAR_DIR = Path(os.environ.get("SQUALL_ZOOKEEPER_JARS", str(DEBIAN_JAR_DIR)))
CLASSPATH_JARS = ("zookeeper.jar", "servlet-api.jar", "slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
TICK_MS = 1000
INIT_LIMIT = 10
SYNC_LIMIT = 5


def zoo_cfg(node: NodeContext) -> str:
    """The text of one node's zoo.cfg (pure: tested without a JVM)."""
    ports = node.ports
    lines = [
        f"tickTime={TICK_MS}",
        f"initLimit={INIT_LIMIT}",
        f"syncLimit={SYNC_LIMIT}",
        f"dataDir={node.path('data')}",
        f"clientPort={ports.client}",
        f"clientPortAddress={node.listen_host}",
        "admin.enableServer=false",
        "4lw.commands.whitelist=*",
        "maxClientCnxns=0",
        # 64 MB preallocated log segments are wasteful for short runs.
        "preAllocSize=4096",
        "autopurge.purgeInterval=0",
        # Snapshots within a campaign, as for the node (SNAP_COUNT): ZooKeeper takes one
        # after snapCount/2 plus a random share of snapCount transactions.
        f"snapCount={SNAP_COUNT}",
    ]
    if len(node.nodes) > 1:
        for i, other in enumerate(node.nodes, start=1):
            if other == node.name:
                host, peer, elect = node.host, ports.peer, ports.election
            else:
                host, peer, elect = ports.peer_addresses[other]
            lines.append(f"server.{i}={host}:{peer}:{elect}")
        if node.listen_host not in ("127.0.0.1", "localhost"):
            # its own server line names its host; bind the quorum ports on every interface
            lines.append("quorumListenOnAllIPs=true")
    return "\n".join(lines) + "\n"


class ZooKeeperDB(ZooKeeperProtocol, DBBase):
    name = "zookeeper"
    peer_kinds = ("peer", "election")

    def __init__(self, heap: str = "256m", java: str | None = None) -> None:
        self.heap = heap
        self.java = java or shutil.which("java") or "java"

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") when the jars and a JVM exist on this machine; else (False, why)."""
        missing = [str(JAR_DIR / j) for j in CLASSPATH_JARS if not (JAR_DIR / j).exists()]
        if missing:
            return False, f"missing {', '.join(missing)} (install Debian's zookeeper package)"
        if shutil.which("java") is None:
            return False, "no `java` on PATH (install a JRE, e.g. openjdk-17-jre-headless)"
        return True, ""

    def host_needs(self) -> HostNeeds:
        return HostNeeds(
            debian_packages=("zookeeper", "default-jre-headless"),
            probe=f"test -f {DEBIAN_JAR_DIR}/zookeeper.jar && command -v java",
        )

    def prepare(self, node: NodeContext) -> NodeLaunch:
        if node.local:
            ok, why = self.available()
            if not ok:
                raise SetupError(f"cannot run Apache ZooKeeper: {why}")
            java, jars = self.java, JAR_DIR
        else:  # the host's (or image's) own JRE and Debian's jars
            java, jars = "java", DEBIAN_JAR_DIR
        classpath = ":".join(str(jars / j) for j in CLASSPATH_JARS)
        argv = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
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
            "-cp",
            classpath,
            MAIN_CLASS,
            node.path("zoo.cfg"),
        ]
        return NodeLaunch(
            argv=argv,
            files={"zoo.cfg": zoo_cfg(node), "data/myid": f"{node.index}\n"},
            dirs=("data",),
            log=f"{node.name}.log",
        )

    def supported_node_counts(self) -> tuple[int, ...]:
        # ZooKeeper runs an ensemble of any size, even ones included (a quorum
        # is a strict majority); the harness's own bound is 9 nodes.
        return tuple(range(1, 10))


def make(options: dict[str, Any] | None = None) -> ZooKeeperDB:
    options = options or {}
    return ZooKeeperDB(heap=str(options.get("heap", "256m")))
