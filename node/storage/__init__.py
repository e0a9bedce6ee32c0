"""Durable state: the Raft store every node keeps, over a checksummed write-ahead log.

``open_member_store(data_dir)`` locks the data dir, imports an old standalone
data dir once (``node.storage.legacy``) and recovers the Raft store
(``node.storage.raftlog``), whose records live in ``WriteAheadLog`` segments
(``node.storage.wal``).
"""

from node.storage.layout import RAFT_DIR, StorageLockedError, lock_dir, open_member_store
from node.storage.legacy import LegacyDataError
from node.storage.raftlog import RaftLogError, RaftStore
from node.storage.wal import CorruptLogError, WriteAheadLog

__all__ = [
    "CorruptLogError",
    "LegacyDataError",
    "RAFT_DIR",
    "RaftLogError",
    "RaftStore",
    "StorageLockedError",
    "WriteAheadLog",
    "lock_dir",
    "open_member_store",
]
