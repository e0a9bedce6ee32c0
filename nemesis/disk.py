"""The disk fault: kill nodes and lose every write they never fsynced.

``{"f": "lose-unsynced", "value": TARGET}`` (TARGET as for kill: one,
minority, majority, all, leader) kills the chosen nodes hard and makes their
disks forget every byte, file and directory entry written since the last
fsync/fdatasync, as a power cut would (the cluster's data dirs live on a
filesystem that remembers what is unsynced: ``harness/backends/lazyfs.py``
on the local backend). The nodes stay down until the stop op
``{"f": "start", "value": "all"}`` restarts them on what is left.

SIGKILL alone cannot show a node that acknowledges writes before they are
durable: the operating system's page cache outlives the process. This can.
"""

from __future__ import annotations

import random
from typing import Any

from nemesis import process
from nemesis.base import FaultTarget, LosesUnsynced

START, STOP = "lose-unsynced", "start"
TARGETS = process.TARGETS


def require(target: FaultTarget) -> LosesUnsynced:
    """Refuse (at setup) a target that cannot lose unsynced writes; return it as one that can."""
    if not isinstance(target, LosesUnsynced):
        raise ValueError(
            f"{type(target).__name__} cannot lose unsynced writes: the disk fault needs "
            "data dirs on lazyfs (the local and Docker backends)"
        )
    return target


def lose_unsynced(target: FaultTarget, spec: str, rng: random.Random) -> dict[str, Any]:
    """Perform the start op on ``target``; return the op's info value."""
    disk = require(target)
    nodes, note = process.select(spec, target.nodes, rng, target.leader)
    lost = {}
    for node in nodes:
        r = disk.lose_unsynced(node)
        lost[node] = {
            "files": len(r.get("reverted_files", [])),
            "bytes_cut": r.get("bytes_cut", 0),
            "removed": r.get("removed_entries", []),
        }
    out: dict[str, Any] = {"lost-unsynced": nodes, "lost": lost}
    if note:
        out["note"] = note
    return out
