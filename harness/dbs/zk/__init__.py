"""What the ZooKeeper-protocol databases (the squall node and Apache
ZooKeeper) share: status from the four-letter word ``srvr`` (``admin``), the
kazoo clients of every workload interface (``conn`` and one module per
interface), and one node's copy of a workload's znodes for the converge
phase (``conn.snapshot``). ``ZooKeeperProtocol`` is the mixin the two
database classes take it from; a third database that speaks ZooKeeper's
client protocol can take it too.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from harness.dbs.base import NodeStatus, NotOffered
from harness.dbs.zk.admin import srvr_status

# Transactions between snapshots in a campaign (snapCount), for the node and ZooKeeper alike:
# their default (100000) never comes in a run of minutes, and then snapshotting, log
# compaction, catch-up by snapshot and recovery from a snapshot would never run under faults.
SNAP_COUNT = 100

# interface -> (module under harness.dbs.zk, its ClientFactory class)
CLIENTS: dict[str, tuple[str, str]] = {
    "register": ("register", "RegisterClients"),
    "set": ("set", "SetClients"),
    "lock": ("lock", "LockClients"),
    "session": ("session", "SessionClients"),
    "multi": ("multi", "MultiClients"),
    "watch": ("watch", "WatchClients"),
    "queue": ("queue", "QueueClients"),
    "counter": ("counter", "CounterClients"),
    "election": ("election", "ElectionClients"),
}


class ZooKeeperProtocol:
    """Status, leadership, clients and snapshots over ZooKeeper's client
    protocol (implements ``DB.status``/``clients``, ``Primary`` and ``Snapshots``)."""

    name = "zookeeper-protocol"
    interfaces: tuple[str, ...] = tuple(CLIENTS)

    def status(self, address: str, timeout_s: float = 1.0) -> NodeStatus:
        return srvr_status(address, timeout_s)

    def claims_leadership(self, status: NodeStatus) -> bool:
        return status.claims_leadership

    def clients(self, interface: str, settings: Mapping[str, Any]) -> Any:
        if interface not in self.interfaces or interface not in CLIENTS:
            raise NotOffered(
                f"--db {self.name} offers no {interface!r} client (it offers: {', '.join(self.interfaces)})"
            )
        module, cls = CLIENTS[interface]
        return getattr(importlib.import_module(f"harness.dbs.zk.{module}"), cls)(settings)

    def snapshot(self, address: str, paths: tuple[str, ...], timeout_s: float = 10.0) -> dict[str, Any]:
        from harness.dbs.zk.conn import snapshot

        return snapshot(address, paths, timeout_s)
