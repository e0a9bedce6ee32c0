"""Durable state: a checksummed write-ahead log with group-commit fsync, and snapshots.

``Storage.open(data_dir)`` recovers (newest valid snapshot + log replay) and
then keeps new transactions durable; ``WriteAheadLog`` and ``Snapshots`` are
the two file formats underneath.
"""

from node.storage.snapshot import Snapshots
from node.storage.store import Storage, StorageLockedError, lock_dir
from node.storage.wal import CorruptLogError, WriteAheadLog

__all__ = ["CorruptLogError", "Snapshots", "Storage", "StorageLockedError", "WriteAheadLog", "lock_dir"]
