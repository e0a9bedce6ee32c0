"""The database protocol: how one node of a database is configured and run.

A DB knows how to lay out a node's config and data dir and which argv starts
it; the backend owns the process (start, stop, signals, logs). Readiness and
leadership come from the four-letter words ``ruok``/``srvr`` that both
Apache ZooKeeper and the squall node answer on their client port.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class NodePorts:
    """The ports of one node. ``peer``/``election`` are its real listening
    ports; ``peer_addresses`` maps every OTHER node to the "host:peer:elect"
    address this node must dial to reach it (a proxy dedicated to the link)."""

    client: int
    peer: int
    election: int
    peer_addresses: dict[str, tuple[str, int, int]]
    client_ports: dict[str, int] = field(default_factory=dict)  # every node's client port


@runtime_checkable
class DB(Protocol):
    name: str

    def prepare(self, node: str, index: int, all_nodes: list[str], ports: NodePorts,
                data_dir: Path) -> tuple[list[str], dict[str, str], Path]:
        """Write config files under data_dir; return (argv, env, log_path).

        ``index`` is 1-based (ZooKeeper's myid). The process runs with
        cwd=data_dir."""

    def is_ready(self, address: str) -> bool:
        """Does the node at "host:port" answer and serve (leader/follower/standalone)?"""

    def leader(self, cluster: Any) -> str | None:
        """The node whose ``srvr`` says Mode: leader (or standalone)."""

    def supported_node_counts(self) -> tuple[int, ...]:
        """The cluster sizes this database can run; ``--nodes`` is checked
        against them before anything starts."""


def four_letter_word(address: str, word: str, timeout_s: float = 1.0) -> str:
    """Send a four-letter word to "host:port"; return the reply ("" on error)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(word.encode("ascii"))
            chunks = []
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                chunks.append(data)
                if sum(map(len, chunks)) > 1 << 20:
                    break
        return b"".join(chunks).decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


def parse_srvr(text: str) -> dict[str, Any]:
    """Parse a ``srvr`` reply into {"mode": str, "zxid": int|None, ...}.

    An empty or unparsable reply gives {"mode": "down"}."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "mode":
            out["mode"] = value
        elif key == "zxid":
            try:
                out["zxid"] = int(value, 16) if value.startswith("0x") else int(value)
            except ValueError:
                out["zxid"] = None
        elif key == "node count":
            try:
                out["node_count"] = int(value)
            except ValueError:
                pass
    if "mode" not in out:
        # A server up but not serving says "This ZooKeeper instance is not
        # currently serving requests".
        out["mode"] = "not-serving" if text.strip() else "down"
    return out


SERVING_MODES = ("leader", "follower", "standalone", "observer")
