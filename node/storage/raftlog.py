"""Durable storage of one ensemble member: Raft hard state, log entries, snapshots.

The replica (``node.replica``) describes every durable change as a
``Persist``; ``ReplicaDisk`` is its reference meaning. This store gives the
same meaning a disk:

* every ``Persist`` becomes records in a checksummed write-ahead log
  (``node.storage.wal``): ``E`` + an entry, ``H`` + a hard state, ``S`` /
  ``C`` + a snapshot's (index, term, zxid) for an installed / compacted
  snapshot; ``sync()`` makes all of them durable with one fdatasync;
* a snapshot's bytes go to their own file ``raft-snap-<index>.bin``
  (written to a temporary name, fsynced, renamed, directory fsynced) *before*
  the record that names it, so a record never names a missing snapshot;
* recovery replays the records into a ``ReplicaDisk`` in order, which is
  exactly what the replica asked for, torn tail cut by the WAL;
* after a snapshot the log is checkpointed: a new segment starts with the
  snapshot record, the hard state and every entry still after the snapshot;
  once that is synced the older segments and snapshot files are deleted.
  A crash anywhere in between replays the old segments then the checkpoint
  (which re-appends the same entries), so no state is lost or invented.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from pathlib import Path

from node.consensus import Entry, HardState, PersistentState, Snapshot
from node.consensus.messages import SnapshotMeta
from node.storage.wal import WriteAheadLog, _fsync_dir

log = logging.getLogger("squall.node.storage")

_META = struct.Struct(">QQQ")  # index, term, zxid
_SNAP_HEAD = b"SQSNAP1\n"
_K_ENTRY, _K_HARD, _K_SNAP, _K_COMPACT = b"E", b"H", b"S", b"C"


class RaftLogError(Exception):
    """The ensemble's data dir is inconsistent in a way recovery refuses to guess about."""


def _snap_name(index: int) -> str:
    return f"raft-snap-{index:016x}.bin"


class RaftStore:
    """Append-only durable image of a replica's disk. Not thread-safe; one owner."""

    def __init__(self, directory: str | os.PathLike, retain_snapshots: int = 3, purge_interval_s: float = 0.0) -> None:
        """``retain_snapshots`` (autopurge.snapRetainCount): snapshot files kept, newest first;
        ``purge_interval_s`` (autopurge.purgeInterval): 0 = drop superseded segments and
        snapshots at every checkpoint, else at most this often (recovery then replays the
        older segments too, before the checkpoint that supersedes them)."""
        from node.replica import ReplicaDisk  # lazy: the replica module is heavier than the store

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.wal = WriteAheadLog(self.dir / "raft-wal")
        self.disk = ReplicaDisk()
        self._key = 0
        self.syncs = 0
        self.retain_snapshots = max(1, retain_snapshots)
        self.purge_interval_s = purge_interval_s
        self._purged_at = time.monotonic()
        self._recover()

    # -- recovery

    def _recover(self) -> None:
        count = 0
        for payload in self.wal.recover():
            count += 1
            self._replay(payload)
        segs = self.wal.segments()
        self._key = (segs[-1][0] if segs else 0) + count + 1
        snap_index = self.disk.snapshot.meta.index
        if snap_index and not self.disk.snapshot.data:
            raise RaftLogError(
                f"the log names snapshot {snap_index} but {self.dir / _snap_name(snap_index)} "
                "is missing or unreadable; restore the data dir or wipe it to rejoin from a peer"
            )
        log.info(
            "raft store: recovered %d records, snapshot at %d, %d entries, term %d",
            count,
            snap_index,
            len(self.disk.entries),
            self.disk.hard_state.term,
        )

    def _replay(self, payload: bytes) -> None:
        from node.replica import Persist

        kind, body = payload[:1], payload[1:]
        try:
            if kind == _K_ENTRY:
                e = Entry.from_bytes(body)
                entries = self.disk.entries
                if entries and e.index == entries[-1].index + 1:
                    entries.append(e)  # the common case: the next entry (what apply would do)
                elif e.index > self.disk.snapshot.meta.index:
                    self.disk.apply(Persist(entries=(e,)))
            elif kind == _K_HARD:
                self.disk.apply(Persist(hard_state=HardState.from_bytes(body)))
            elif kind in (_K_SNAP, _K_COMPACT):
                index, term, zxid = _META.unpack(body)
                snap = Snapshot(SnapshotMeta(index, term, zxid), self._read_snapshot(index))
                if kind == _K_SNAP:
                    self.disk.apply(Persist(snapshot=snap))
                else:
                    self.disk.apply(Persist(compaction=snap))
            else:
                raise RaftLogError(f"unknown record kind {kind!r} (allowed: E, H, S, C)")
        except (ValueError, struct.error) as exc:
            raise RaftLogError(f"undecodable record in {self.wal.dir}: {exc}") from None

    def _read_snapshot(self, index: int) -> bytes:
        """The snapshot's bytes, or b"" when its file was purged (a newer one superseded it)."""
        path = self.dir / _snap_name(index)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return b""
        if not data.startswith(_SNAP_HEAD):
            raise RaftLogError(f"{path} is not a squall raft snapshot (bad header)")
        return data[len(_SNAP_HEAD) :]

    def state(self) -> PersistentState:
        return self.disk.state()

    # -- writing

    def _append(self, kind: bytes, body: bytes) -> None:
        self.wal.append(kind + body, self._key)
        self._key += 1

    def persist(self, p) -> None:
        """Buffer one ``Persist`` (durable after ``sync``); snapshots checkpoint the log."""
        snap = p.snapshot if p.snapshot is not None else p.compaction
        if snap is not None and (p.snapshot is not None or snap.meta.index > self.disk.snapshot.meta.index):
            self._write_snapshot_file(snap)
        self.disk.apply(p)
        if snap is not None:
            self._checkpoint(_K_SNAP if p.snapshot is not None else _K_COMPACT)
            return
        for e in p.entries:
            self._append(_K_ENTRY, e.to_bytes())
        if p.hard_state is not None:
            self._append(_K_HARD, p.hard_state.to_bytes())

    def _write_snapshot_file(self, snap: Snapshot) -> None:
        path = self.dir / _snap_name(snap.meta.index)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_SNAP_HEAD)
            f.write(snap.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)

    def _checkpoint(self, kind: bytes) -> None:
        """Rewrite the current disk image into a fresh segment, then drop what it supersedes."""
        self.wal.sync()
        self.wal.roll()
        first = self._key
        m = self.disk.snapshot.meta
        self._append(kind, _META.pack(m.index, m.term, m.zxid))
        self._append(_K_HARD, self.disk.hard_state.to_bytes())
        for e in self.disk.entries:
            self._append(_K_ENTRY, e.to_bytes())
        self.sync()
        now = time.monotonic()
        if self.purge_interval_s and now - self._purged_at < self.purge_interval_s:
            return
        self._purged_at = now
        for p in self.wal.purge_through(first - 1):
            log.info("raft store: purged log segment %s (superseded by the checkpoint)", p.name)
        # Names sort by index (fixed-width hex); the newest (the checkpoint's) is always kept.
        snaps = sorted(p for p in self.dir.glob("raft-snap-*.bin") if p.name != _snap_name(m.index))
        for p in snaps[: max(0, len(snaps) - (self.retain_snapshots - 1))]:
            p.unlink(missing_ok=True)

    def sync(self, durable: bool = True) -> None:
        """Write what was persisted and fdatasync it (``durable=False``: write only; the
        TEST-ONLY skip-fsync fault)."""
        self.wal.sync(durable)
        self.syncs += 1

    def close(self) -> None:
        self.wal.close()


__all__ = ["RaftLogError", "RaftStore"]
