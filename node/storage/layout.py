"""A node's data dir: who may use it, and where its Raft store lives.

Layout::

    DATA_DIR/LOCK                      flock held while a node uses the dir
    DATA_DIR/ensemble/raft-wal/        the Raft store's write-ahead log (node.storage.raftlog)
    DATA_DIR/ensemble/raft-snap-*.bin  its snapshots
    DATA_DIR/squall-node.log           the node's log file

Every node -- standalone or a member of three or five -- keeps the same
Raft store there (the directory's name predates one-member nodes). A data
dir of the old standalone format (``DATA_DIR/wal/``, ``DATA_DIR/snapshots/``)
is imported into it once, at the first start (``node.storage.legacy``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from node.storage.raftlog import RaftStore

RAFT_DIR = "ensemble"


class StorageLockedError(Exception):
    """Another process holds the data dir."""


def lock_dir(directory: Path) -> int:
    """Take ``directory``'s LOCK file (exclusive, non-blocking); returns the fd to close on exit.

    Raises ``StorageLockedError`` when another process holds it."""
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageLockedError(
            f"data dir {directory} is in use by another process (LOCK is held); stop it or use another --data-dir"
        ) from None
    return fd


def open_member_store(
    data_dir: Path, retain_snapshots: int = 3, purge_interval_s: float = 0.0
) -> tuple[RaftStore, int]:
    """Lock ``data_dir``, import an old standalone data dir if there is one, open the Raft store.

    Returns the store and the lock's fd (close both when done). Raises
    ``StorageLockedError``, ``node.storage.legacy.LegacyDataError`` and the
    store's recovery errors (``CorruptLogError``, ``RaftLogError``), each naming the problem.
    """
    from node.storage.legacy import import_legacy

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_dir(data_dir)
    try:
        import_legacy(data_dir, data_dir / RAFT_DIR)
        store = RaftStore(data_dir / RAFT_DIR, retain_snapshots=retain_snapshots, purge_interval_s=purge_interval_s)
    except BaseException:
        os.close(lock_fd)
        raise
    return store, lock_fd


__all__ = ["RAFT_DIR", "StorageLockedError", "lock_dir", "open_member_store"]
