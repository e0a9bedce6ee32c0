"""etcd (Debian's ``etcd-server`` 3.4, ``/usr/bin/etcd``) as a database under test.

One etcd member per node, started as::

    etcd --name n1 --data-dir data \\
         --listen-client-urls http://127.0.0.1:C --advertise-client-urls http://127.0.0.1:C \\
         --listen-peer-urls P1 --initial-advertise-peer-urls P1 \\
         --initial-cluster n1=P1,n2=P2,n3=P3 --initial-cluster-state new ...

Peer URLs and partitions. etcd derives every member's id from the peer URLs
in ``--initial-cluster``, so all members must name a member by the same URL:
the local backend's per-link proxies (``harness/backends/proxy.py``), which
give each member its own address for each peer, cannot be named in TCP URLs.
Locally, peer URLs are therefore Unix sockets named relative to the member's
working directory, its node directory: ``unix://peer-n2:2380`` is the file
``peer-n2:2380`` in the directory of whoever dials it. Member n2 listens on
``<n2's dir>/peer-n2:2380``; in n1's directory the same name is the
harness's proxy for the link n1 -> n2 (``peer_socket``, the ``PeerSockets``
ability), so every member names n2 alike while every link is a proxy of its
own that a partition can cut. Elsewhere (Docker, SSH: a host per member)
peer URLs are ``http://<host>:<peer port>`` and partitions are iptables rules.

Status comes from etcd's own API, never from its log: ``/health`` (the
member has a leader and answers) and the maintenance Status RPC through the
v3 JSON gateway (``POST /v3/maintenance/status``: the member's id, the
leader's id, the raft term, the raft index, the store's revision).

Clients: ``harness/dbs/etcd_clients.py`` (register, set, lock and the etcd
watch stream), over the v3 JSON gateway (why not a Python etcd library:
``harness/dbs/etcd_gateway.py``).

Timing: etcd's defaults (heartbeat 100 ms, election timeout 1 s) with
pre-vote on (the default from etcd 3.5; it keeps a member that was cut off
from disrupting the cluster with a raised term when it comes back), so a
cluster elects a new leader within a second or two of a fault's end. Watch
streams get a progress notification every second (an idle stream that says
nothing for 5 s is taken as broken and resumed elsewhere).

TEST ONLY: ``--unsafe-db-fault stale-reads|drop-watch-events`` arms a
client-side fault in the clients this database hands out (see
``harness/dbs/etcd_clients.py``); etcd itself always runs unchanged.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from harness.dbs.base import DBBase, HostNeeds, NodeContext, NodeLaunch, NodeStatus, NotOffered, SetupError
from harness.dbs.etcd_clients import READ_MODES, UNSAFE_FAULTS
from harness.dbs.etcd_gateway import get_json, post_json

ETCD = os.environ.get("SQUALL_ETCD", "/usr/bin/etcd")
PEER_SOCKET_PORT = 2380  # etcd's URLs need a port; a Unix socket's name carries it
HEARTBEAT_MS = 100
ELECTION_MS = 1000
PROGRESS_NOTIFY = "1s"
CLUSTER_TOKEN = "squall"
# what the workloads' clients touch, compared across members after healing
PREFIXES = {
    "register": ("/squall/register/",),
    "set": ("/squall/set/",),
    "lock": ("/squall/lock/",),
    "watch-stream": ("/squall/watch/",),
}


def peer_socket(node: str) -> str:
    """The file name of ``node``'s peer socket, in its own directory (where
    it listens) and in every other member's (where the harness's proxy for
    the link to it listens)."""
    return f"peer-{node}:{PEER_SOCKET_PORT}"


def peer_url(node: NodeContext, other: str, unix_peers: bool) -> str:
    """How every member names ``other``'s peer endpoint."""
    if unix_peers:
        return f"unix://{peer_socket(other)}"
    if other == node.name:
        return f"http://{node.host}:{node.ports.peer}"
    host, port, _ = node.ports.peer_addresses[other]
    return f"http://{host}:{port}"


def etcd_argv(node: NodeContext, binary: str = ETCD, unix_peers: bool | None = None) -> list[str]:
    """The member's command line (pure: tested without etcd)."""
    unix = node.local if unix_peers is None else unix_peers
    me = peer_url(node, node.name, unix)
    listen_peer = me if unix else f"http://{node.listen_host}:{node.ports.peer}"
    client_host = node.host if not node.local else "127.0.0.1"
    cluster = ",".join(f"{n}={peer_url(node, n, unix)}" for n in node.nodes)
    return [
        binary,
        "--name",
        node.name,
        "--data-dir",
        "data",
        "--listen-client-urls",
        f"http://{node.listen_host}:{node.ports.client}",
        "--advertise-client-urls",
        f"http://{client_host}:{node.ports.client}",
        "--listen-peer-urls",
        listen_peer,
        "--initial-advertise-peer-urls",
        me,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        CLUSTER_TOKEN,
        "--heartbeat-interval",
        str(HEARTBEAT_MS),
        "--election-timeout",
        str(ELECTION_MS),
        "--pre-vote",
        "--experimental-watch-progress-notify-interval",
        PROGRESS_NOTIFY,
        "--enable-v2=false",
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
    ]


def status_from(reply: Mapping[str, Any] | None, health: Mapping[str, Any] | None) -> NodeStatus:
    """A NodeStatus from the maintenance Status reply and ``/health`` (pure).

    The member leads when the leader id it reports is its own; it serves
    when ``/health`` says true (it has a leader and answers reads)."""
    if reply is None:
        return NodeStatus.down("no answer to the maintenance Status call")
    header = reply.get("header") or {}
    member, leader = str(header.get("member_id", "")), str(reply.get("leader", "0"))
    healthy = bool(health) and str((health or {}).get("health")) == "true"
    if leader in ("", "0"):
        role = "candidate"
    elif leader == member:
        role = "leader"
    else:
        role = "follower"
    term = reply.get("raftTerm")
    applied = reply.get("raftAppliedIndex", reply.get("raftIndex"))
    details = {
        "member_id": member,
        "leader_id": leader,
        "revision": int(header.get("revision", 0) or 0),
        "raft_index": int(reply.get("raftIndex", 0) or 0),
        "version": reply.get("version"),
        "health": (health or {}).get("health"),
    }
    return NodeStatus(
        role if healthy or role != "follower" else "not-serving",
        serving=healthy,
        term=int(term) if term is not None else None,
        applied=int(applied) if applied is not None else None,
        details=details,
    )


@functools.lru_cache(maxsize=4)
def etcd_version(binary: str = ETCD) -> str | None:
    """``etcd --version``'s version, or None when it does not run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.lower().startswith("etcd version:"):
            return line.split(":", 1)[1].strip()
    return None


class EtcdDB(DBBase):
    """etcd as a database under test (see the module doc). Implements the DB
    protocol and ``Primary``, ``Snapshots``, ``TestFaults``, ``Installs``
    and ``PeerSockets``."""

    name = "etcd"
    peer_kinds: tuple[str, ...] = ("peer",)
    interfaces: tuple[str, ...] = ("register", "set", "lock", "watch-stream")
    unsafe_faults: tuple[str, ...] = UNSAFE_FAULTS
    default_reads = "linearizable"
    # etcd's watch is a revision stream, not ZooKeeper's one-shot watches:
    # `--workload watch` runs the watch-stream workload (docs/etcd.md)
    workload_aliases = {"watch": "watch-stream"}
    reads_modes: tuple[str, ...] = ("linearizable", "local", "sync")
    # faults that cannot bite (squall run refuses them; `all` leaves them out)
    unsupported_faults = {
        "clock": "etcd is a Go program: it reads the clock through the kernel's vDSO, which "
        "the clock fault's libfaketime preload never reaches (the fault would do nothing)"
    }

    def __init__(self, binary: str = ETCD, unsafe_fault: str | None = None) -> None:
        if unsafe_fault is not None and unsafe_fault not in UNSAFE_FAULTS:
            raise SetupError(f"--db etcd has no test fault {unsafe_fault!r}; allowed: {', '.join(UNSAFE_FAULTS)}")
        self.binary = binary
        self.unsafe_fault = unsafe_fault

    # -- availability -----------------------------------------------------
    def available(self) -> tuple[bool, str]:
        """(True, "") when the etcd binary runs and is 3.4 or newer."""
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            found = shutil.which("etcd")
            hint = f" (there is one at {found}; set SQUALL_ETCD)" if found else ""
            return False, f"no etcd at {self.binary}{hint}: install Debian's etcd-server package"
        version = etcd_version(self.binary)
        if version is None:
            return False, f"{self.binary} --version did not answer"
        try:
            major, minor = (int(x) for x in version.split(".")[:2])
        except ValueError:
            return False, f"cannot read etcd's version {version!r}"
        if (major, minor) < (3, 4):
            return False, f"etcd {version} is too old: the v3 JSON gateway at /v3/ needs etcd 3.4 or newer"
        return True, ""

    def host_needs(self) -> HostNeeds:
        return HostNeeds(debian_packages=("etcd-server",), probe=f"test -x {ETCD}")

    def supported_node_counts(self) -> tuple[int, ...]:
        # etcd's members are any number; a quorum is a strict majority, so
        # even sizes tolerate no more failures than the odd size below them.
        return tuple(range(1, 10))

    # -- starting a member ------------------------------------------------
    def peer_socket(self, node: str) -> str:
        return peer_socket(node)

    def prepare(self, node: NodeContext) -> NodeLaunch:
        if node.local:
            ok, why = self.available()
            if not ok:
                raise SetupError(f"cannot run etcd: {why}")
        binary = self.binary if node.local else ETCD
        return NodeLaunch(argv=etcd_argv(node, binary), dirs=("data",), log=f"{node.name}.log")

    # -- status -----------------------------------------------------------
    def status(self, address: str, timeout_s: float = 1.0) -> NodeStatus:
        reply = post_json(address, "/v3/maintenance/status", {}, timeout_s)
        if reply is None:
            return NodeStatus.down(f"{address} did not answer the maintenance Status call")
        return status_from(reply, get_json(address, "/health", timeout_s))

    def claims_leadership(self, status: NodeStatus) -> bool:
        return status.role == "leader"

    # -- clients ----------------------------------------------------------
    def clients(self, interface: str, settings: Mapping[str, Any]) -> Any:
        from harness.dbs.etcd_clients import EtcdClients

        if interface not in self.interfaces:
            raise NotOffered(f"--db etcd offers no {interface!r} client (it offers: {', '.join(self.interfaces)})")
        reads = str(settings.get("reads") or self.default_reads)
        reads = {"local": "serializable", "sync": "linearizable"}.get(reads, reads)
        if reads not in READ_MODES:
            raise SetupError(
                f"--db etcd reads must be linearizable (the default), local (serializable) or sync "
                f"(= linearizable), got {settings.get('reads')!r}"
            )
        return EtcdClients(interface, reads, self.unsafe_fault, PREFIXES[interface])

    def snapshot(self, address: str, paths: tuple[str, ...], timeout_s: float = 10.0) -> dict[str, Any]:
        from harness.dbs.etcd_clients import snapshot

        return snapshot(address, paths, timeout_s)


def make(options: dict[str, Any] | None = None) -> EtcdDB:
    fault = (options or {}).get("unsafe_db_fault")
    return EtcdDB(unsafe_fault=str(fault) if fault else None)
