"""The node's durable state: snapshot + write-ahead log, and recovery from them.

Layout of a data dir::

    DATA_DIR/LOCK                 flock held while a node uses the dir
    DATA_DIR/wal/wal-<zxid>.log   log segments (node.storage.wal)
    DATA_DIR/snapshots/snap-<zxid>.snap

Usage by the shell (group commit)::

    storage = Storage.open(data_dir)          # recovers
    tree = storage.tree                       # sessions: tree.sessions
    # or: storage, tree, last_zxid = Storage.open(data_dir)
    ...
    for txn in batch:                         # each stamped by the proposer
        storage.log(txn)
        result = tree.apply(txn)
    storage.flush()                           # one fdatasync for the batch
    ...reply to every request of the batch...
    storage.maybe_snapshot(tree)              # every ``snapshot_every`` txns

Applying before the flush is safe because no reply (and no watch event)
leaves the node before ``flush`` returns; after a crash, a logged but
unsynced txn is either wholly in the log or cut as a torn tail.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from node.storage.snapshot import Snapshots
from node.storage.wal import CorruptLogError, WriteAheadLog
from node.tree import DataTree, SessionInfo, Txn, decode_txn, encode_txn

log = logging.getLogger("squall.node.storage")


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
        raise StorageLockedError(f"data dir {directory} is in use by another process (LOCK is held); "
                                 "stop it or use another --data-dir") from None
    return fd


class Storage:
    """Recovered state plus the log and snapshots it keeps durable.

    Attributes after ``open``: ``tree`` (the recovered DataTree),
    ``sessions`` (its session table: id -> SessionInfo), ``last_zxid``
    (at recovery time), ``replayed`` (log records applied on recovery).
    """

    def __init__(self, data_dir: Path, tree: DataTree, wal: WriteAheadLog, snaps: Snapshots, snapshot_every: int, lock_fd: int) -> None:
        self.data_dir = data_dir
        self.tree = tree
        self.wal = wal
        self.snapshots = snaps
        self.snapshot_every = snapshot_every
        self._lock_fd = lock_fd
        self._since_snapshot = 0
        self.replayed = 0
        # autopurge.purgeInterval: 0 = purge covered segments at every snapshot, else at most this often
        self.purge_interval_s = 0.0
        self._purged_at = time.monotonic()

    @property
    def sessions(self) -> dict[int, SessionInfo]:
        return self.tree.sessions

    @property
    def last_zxid(self) -> int:
        return self.tree.last_zxid

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike,
        *,
        snapshot_every: int = 50_000,
        segment_bytes: int = 64 << 20,
        preallocate_bytes: int = 1 << 20,
        keep_snapshots: int = 3,
        purge_interval_s: float = 0.0,
    ) -> "Storage":
        """Lock the dir, load the newest valid snapshot, replay the log after it.

        Raises ``CorruptLogError`` for a damaged record in the middle of the
        log, ``StorageLockedError`` if another process holds the dir.
        """
        root = Path(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        lock_fd = lock_dir(root)
        try:
            snaps = Snapshots(root / "snapshots", keep=keep_snapshots)
            tree = cls._load_snapshot(snaps)
            wal = WriteAheadLog(root / "wal", segment_bytes=segment_bytes, preallocate_bytes=preallocate_bytes)
            replayed = 0
            skipped = 0
            for payload in wal.recover():
                try:
                    txn = decode_txn(payload)
                except ValueError as e:
                    raise CorruptLogError(f"a log record in {root / 'wal'} passed its checksum but does not decode: {e}") from None
                if txn.zxid <= tree.last_zxid:
                    skipped += 1
                    continue
                prev = tree.last_zxid
                if prev and txn.zxid >> 32 == prev >> 32 and txn.zxid != prev + 1:
                    # zxids are contiguous within an epoch: something between is missing
                    log.warning("storage: log jumps from zxid 0x%x to 0x%x within one epoch; transactions in between are missing", prev, txn.zxid)
                tree.apply(txn)
                replayed += 1
        except BaseException:
            os.close(lock_fd)
            raise
        log.info("storage: recovered %s at zxid 0x%x (%d log records replayed, %d already in the snapshot)", root, tree.last_zxid, replayed, skipped)
        store = cls(root, tree, wal, snaps, snapshot_every, lock_fd)
        store.purge_interval_s = purge_interval_s
        store.replayed = replayed
        store._since_snapshot = replayed
        return store

    @staticmethod
    def _load_snapshot(snaps: Snapshots) -> DataTree:
        for zxid, path in reversed(snaps.list()):
            try:
                _, payload = snaps.read(path)
                tree = DataTree.deserialize(payload)
                log.info("storage: loaded snapshot %s (zxid 0x%x, %d znodes)", path.name, tree.last_zxid, tree.node_count)
                return tree
            except (ValueError, OSError) as e:
                log.error("storage: snapshot %s is unusable, trying an older one: %s", path, e)
        return DataTree()

    def log(self, txn: Txn) -> None:
        """Append one stamped txn to the log (buffered; durable after ``flush``)."""
        self.wal.append(encode_txn(txn), txn.zxid)
        self._since_snapshot += 1

    def flush(self) -> None:
        """Make every logged txn durable (one write + fdatasync for the whole batch)."""
        self.wal.sync()

    def maybe_snapshot(self, tree: DataTree | None = None, force: bool = False) -> bool:
        """Snapshot ``tree`` if ``snapshot_every`` txns were logged since the last one.

        Flushes the log first, writes the snapshot atomically, rolls the log
        to a new segment and purges segments older than the oldest kept
        snapshot. Returns True if a snapshot was taken.
        """
        if not force and self._since_snapshot < self.snapshot_every:
            return False
        tree = tree if tree is not None else self.tree
        self.write_snapshot(tree.serialize(), tree.last_zxid)
        return True

    def write_snapshot(self, data: bytes, zxid: int) -> None:
        """Write an already serialized tree (``tree.serialize()`` at ``zxid``) as a snapshot.

        For a shell that serializes on its event loop and writes on its disk
        thread. Call it from the same thread as ``log``/``flush`` (it flushes
        the log, rolls to a new segment and purges covered segments), and
        only when every txn up to ``zxid`` has been logged.
        """
        self.flush()
        self.snapshots.write(zxid, data)
        self.wal.roll()
        self._since_snapshot = 0
        now = time.monotonic()
        if self.purge_interval_s and now - self._purged_at < self.purge_interval_s:
            return
        self._purged_at = now
        oldest = self.snapshots.oldest_zxid()
        if oldest is not None:
            for p in self.wal.purge_through(oldest):
                log.info("storage: purged log segment %s (covered by snapshots)", p.name)

    def __iter__(self):
        """``storage, tree, last_zxid = Storage.open(dir)`` unpacking (the recovered triple)."""
        return iter((self, self.tree, self.tree.last_zxid))

    def close(self) -> None:
        """Flush, close the log and release the data dir."""
        try:
            self.wal.close()
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
