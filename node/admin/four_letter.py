"""Four-letter words on the client port (ruok, srvr, stat, mntr, conf, cons, envi, isro, wchs, wchc, wchp, dump).

A connection whose first four bytes are one of :data:`WORDS` is an admin
query, not a client: the server answers with :func:`answer` and closes it.
Rendering is pure: the server hands over an :class:`AdminView` (a snapshot of
plain values it collected), so answering never touches sessions or the tree
and cannot disturb them. Output follows ZooKeeper 3.8's layout closely enough
for its usual readers (kazoo's ``server_version()`` parses ``envi``; scripts
grep ``Mode:`` and ``Zxid:`` from ``srvr``; Prometheus-style exporters split
``mntr`` on tabs).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

WORDS = frozenset(
    {
        "ruok",
        "srvr",
        "stat",
        "mntr",
        "conf",
        "cons",
        "envi",
        "isro",
        "wchs",
        "wchc",
        "wchp",
        "dump",
        "srst",
        "crst",
        "dirs",
        "gtmk",
    }
)
WORD_BYTES = frozenset(w.encode("ascii") for w in WORDS)

# Every word ZooKeeper 3.8 knows (a zoo.cfg may whitelist any of them; ``hash`` and ``stmk`` are not served here).
ZK_WORDS = WORDS | {"hash", "stmk"}
# ZooKeeper 3.8's default ``4lw.commands.whitelist``: only srvr (zkServer.sh needs it). ZooKeeper also adds srvr
# to any whitelist it is given, so srvr is always enabled.
DEFAULT_WHITELIST = frozenset({"srvr"})


def parse_whitelist(text: str) -> frozenset[str]:
    """``4lw.commands.whitelist``: comma-separated words, or ``*`` for all; srvr is always in (as in ZooKeeper)."""
    words = {w.strip() for w in text.split(",") if w.strip()}
    if "*" in words:
        return frozenset(ZK_WORDS)
    unknown = sorted(words - ZK_WORDS)
    if unknown:
        raise ValueError(
            f"unknown four-letter word(s) {', '.join(unknown)} in the whitelist; "
            f"allowed: * or a comma-separated list of {', '.join(sorted(ZK_WORDS))}"
        )
    return frozenset(words) | DEFAULT_WHITELIST


def not_whitelisted(word: str) -> str:
    """ZooKeeper's exact reply to a word that is not in ``4lw.commands.whitelist``."""
    return f"{word} is not executed because it is not in the whitelist.\n"


# What we claim to be: kazoo compares the version to decide which features exist.
ZK_VERSION = "3.8.0"
VERSION_LINE = f"{ZK_VERSION}-squall, built on 01/01/2026 00:00 GMT"


def open_fd_count() -> int:
    """This process's open file descriptors (ZooKeeper's zk_open_file_descriptor_count); -1 where unknown."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the descriptor listdir itself holds open
    except OSError:
        return -1


def max_fd_count() -> int:
    """The soft RLIMIT_NOFILE (zk_max_file_descriptor_count); -1 when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return -1 if soft == resource.RLIM_INFINITY else soft


def approximate_data_size(nodes: Iterable[tuple[str, bytes | None]]) -> int:
    """ZooKeeper's zk_approximate_data_size: every znode's path length plus data length.

    ZooKeeper's DataTree holds the root twice (as "" and "/"), so its sum has
    one more "/" and the root's data once more; lengths of paths are Java
    string lengths (UTF-16 code units). Given (path, data) for every znode.
    """
    total = 0
    for path, data in nodes:
        total += len(path.encode("utf-16-le")) // 2 + (len(data) if data else 0)
        if path == "/":
            total += len(data) if data else 0  # the "" entry: no path, the root's data again
    return total


NODE_LOG_NAME = "squall-node.log"  # the node's text log in its data dir: not data


def storage_size(data_dir: str | os.PathLike[str]) -> int:
    """Bytes of every file under the data dir but the node's text log (zk_data_dir_size, zk_log_dir_size).

    The node keeps its log and snapshots in one directory, as ZooKeeper does
    when dataLogDir is not set; ZooKeeper then reports the same figure for both.
    """
    total = 0
    for root, _, files in os.walk(data_dir):
        for name in files:
            if name == NODE_LOG_NAME:
                continue
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while we looked (a purged segment): not there any more
    return total


def leader_follower_metrics(followers: Iterable[tuple[bool, bool]]) -> tuple[tuple[str, int], ...]:
    """A leader's zk_learners, zk_synced_followers, zk_pending_syncs (ZooKeeper 3.8's names; zk_followers is 3.4's).

    ``followers``: (connected, replicating) for every other voter. ZooKeeper
    counts a learner once its peer connection is up, calls it synced once it
    receives proposals, and pending while it is still being brought up to date;
    here "replicating" is the leader streaming entries to it (Raft's replicate
    state, not probing and not waiting for a snapshot).
    """
    links = [(c, r) for c, r in followers]
    connected = sum(1 for c, _ in links if c)
    synced = sum(1 for c, r in links if c and r)
    return (
        ("zk_learners", connected),
        ("zk_followers", connected),
        ("zk_synced_followers", synced),
        ("zk_synced_non_voting_followers", 0),
        ("zk_synced_observers", 0),
        ("zk_pending_syncs", connected - synced),
    )


@dataclass(frozen=True)
class ConnectionInfo:
    address: str  # "ip:port"
    session_id: int  # 0 before the handshake completes
    queued: int
    received: int
    sent: int
    timeout_ms: int = 0
    last_zxid: int = -1


@dataclass(frozen=True)
class AdminView:
    """Everything the words report, collected by the server at the moment of asking."""

    mode: str = "standalone"
    zxid: int = 0
    node_count: int = 0
    latency_min_ms: float = 0.0
    latency_avg_ms: float = 0.0
    latency_max_ms: float = 0.0
    received: int = 0
    sent: int = 0
    outstanding: int = 0
    connections: tuple[ConnectionInfo, ...] = ()
    # session id -> ephemeral paths
    ephemerals: dict[int, list[str]] = field(default_factory=dict)
    session_timeouts: dict[int, int] = field(default_factory=dict)
    watch_count: int = 0
    watched_paths: int = 0
    # session id -> watched paths, path -> session ids
    watches_by_session: dict[int, list[str]] = field(default_factory=dict)
    watches_by_path: dict[str, list[int]] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    data_dir_size: int = 0
    log_dir_size: int = 0
    approximate_data_size: int = 0
    ephemerals_count: int = 0
    # taken when the view is built, like every other figure in it
    open_fds: int = field(default_factory=open_fd_count)
    max_fds: int = field(default_factory=max_fd_count)
    fsyncs: int = 0
    uptime_s: float = 0.0
    # (name, value) lines appended to mntr (the ensemble's epoch, leader id, ...)
    extra_metrics: tuple[tuple[str, object], ...] = ()


def _srvr(v: AdminView) -> str:
    return (
        f"Zookeeper version: {VERSION_LINE}\n"
        f"Latency min/avg/max: {v.latency_min_ms:.0f}/{v.latency_avg_ms:.4f}/{v.latency_max_ms:.0f}\n"
        f"Received: {v.received}\n"
        f"Sent: {v.sent}\n"
        f"Connections: {len(v.connections)}\n"
        f"Outstanding: {v.outstanding}\n"
        f"Zxid: 0x{v.zxid:x}\n"
        f"Mode: {v.mode}\n"
        f"Node count: {v.node_count}\n"
    )


def _cons_line(c: ConnectionInfo, full: bool) -> str:
    if not full:
        return f" /{c.address}[1](queued={c.queued},recved={c.received},sent={c.sent})\n"
    return (
        f" /{c.address}[1](queued={c.queued},recved={c.received},sent={c.sent},"
        f"sid=0x{c.session_id:x},lop=NA,est=0,to={c.timeout_ms},lzxid=0x{c.last_zxid & 0xFFFFFFFFFFFFFFFF:x})\n"
    )


def _stat(v: AdminView) -> str:
    lines = [f"Zookeeper version: {VERSION_LINE}\n", "Clients:\n"]
    lines += [_cons_line(c, False) for c in v.connections]
    lines.append("\n")
    srvr = _srvr(v).split("\n", 1)[1]
    return "".join(lines) + srvr


def _mntr(v: AdminView) -> str:
    metrics = [
        ("zk_version", VERSION_LINE),
        ("zk_server_state", v.mode),
        ("zk_avg_latency", f"{v.latency_avg_ms:.4f}"),
        ("zk_max_latency", f"{v.latency_max_ms:.0f}"),
        ("zk_min_latency", f"{v.latency_min_ms:.0f}"),
        ("zk_packets_received", v.received),
        ("zk_packets_sent", v.sent),
        ("zk_num_alive_connections", len(v.connections)),
        ("zk_outstanding_requests", v.outstanding),
        ("zk_znode_count", v.node_count),
        ("zk_watch_count", v.watch_count),
        ("zk_ephemerals_count", v.ephemerals_count),
        ("zk_approximate_data_size", v.approximate_data_size),
        ("zk_open_file_descriptor_count", v.open_fds),
        ("zk_max_file_descriptor_count", v.max_fds),
        ("zk_last_zxid", f"0x{v.zxid:x}"),
        ("zk_global_sessions", len(v.session_timeouts)),
        ("zk_fsync_count", v.fsyncs),
        ("zk_uptime", int(v.uptime_s * 1000)),
        ("zk_data_dir_size", v.data_dir_size),
        ("zk_log_dir_size", v.log_dir_size),
        ("zk_local_sessions", 0),  # every session here is global (ZooKeeper's localSessionsEnabled=false)
    ]
    metrics += list(v.extra_metrics)
    return "".join(f"{k}\t{val}\n" for k, val in metrics)


def _envi(v: AdminView) -> str:
    env = [
        ("zookeeper.version", VERSION_LINE),
        ("host.name", "localhost"),
        ("python.version", sys.version.split()[0]),
        ("python.implementation", platform.python_implementation()),
        ("os.name", platform.system()),
        ("os.arch", platform.machine()),
        ("os.version", platform.release()),
        ("user.dir", os.getcwd()),
    ]
    return "Environment:\n" + "".join(f"{k}={val}\n" for k, val in env)


def _wchs(v: AdminView) -> str:
    return f"{len(v.connections)} connections watching {v.watched_paths} paths\nTotal watches:{v.watch_count}\n"


def _wchc(v: AdminView) -> str:
    out = []
    for sid, paths in sorted(v.watches_by_session.items()):
        out.append(f"0x{sid:x}\n" + "".join(f"\t{p}\n" for p in sorted(paths)))
    return "".join(out)


def _wchp(v: AdminView) -> str:
    out = []
    for path, sids in sorted(v.watches_by_path.items()):
        out.append(f"{path}\n" + "".join(f"\t0x{s:x}\n" for s in sorted(sids)))
    return "".join(out)


def _dump(v: AdminView) -> str:
    out = ["SessionTracker dump:\n", f"Session Sets ({len(v.session_timeouts)})/({len(v.session_timeouts)}):\n"]
    for sid, to in sorted(v.session_timeouts.items()):
        out.append(f"\t0x{sid:x} (timeout {to} ms)\n")
    out.append("ephemeral nodes dump:\n")
    out.append(f"Sessions with Ephemerals ({len(v.ephemerals)}):\n")
    for sid, paths in sorted(v.ephemerals.items()):
        out.append(f"0x{sid:x}:\n" + "".join(f"\t{p}\n" for p in sorted(paths)))
    out.append("Connections ...\n")
    return "".join(out)


def answer(word: str, view: AdminView) -> str:
    """The text ZooKeeper would send for ``word`` (an unknown word gets an explanation)."""
    if word == "ruok":
        return "imok"
    if word == "isro":
        return "ro" if view.mode == "read-only" else "rw"
    if word == "srvr":
        return _srvr(view)
    if word == "stat":
        return _stat(view)
    if word == "mntr":
        return _mntr(view)
    if word == "conf":
        return "".join(f"{k}={val}\n" for k, val in view.config.items())
    if word == "cons":
        return "".join(_cons_line(c, True) for c in view.connections) + "\n"
    if word == "envi":
        return _envi(view)
    if word == "wchs":
        return _wchs(view)
    if word == "wchc":
        return _wchc(view)
    if word == "wchp":
        return _wchp(view)
    if word == "dump":
        return _dump(view)
    if word in ("srst", "crst"):
        return "Server stats reset.\n" if word == "srst" else "Connection stats reset.\n"
    if word == "dirs":
        return f"datadir_size: {view.data_dir_size}\nlogdir_size: {view.log_dir_size}\n"
    if word == "gtmk":
        return "0\n"
    return f"{word} is not a four-letter word this server knows; known: {', '.join(sorted(WORDS))}\n"
