"""One-time import of a data dir written by the old standalone node.

Before every node ran on the Raft path, a standalone node kept its own
format: ``DATA_DIR/snapshots/snap-<zxid>.snap`` (``SQSNAP01`` | u64 zxid |
u64 length | u32 crc32 | a serialized tree) and ``DATA_DIR/wal/wal-*.log``
(``node.storage.wal`` records, each an encoded transaction). At the first
start on such a dir the node recovers that state (newest snapshot that
verifies, then the log after it, torn tail cut as before, a corrupt middle
refused) and writes it as the Raft store's first snapshot: index 1, the
epoch of the last zxid as its term, the last zxid as its zxid, so the next
leader term gives zxids above every old one. Sessions and ephemerals come
along (they are part of the tree).

Crash safety: the store is built in ``DATA_DIR/ensemble.importing``, marked
with ``IMPORTED-FROM-STANDALONE``, fsynced and renamed into place; only then
are the old ``wal/`` and ``snapshots/`` moved to ``DATA_DIR/standalone-imported/``
(kept, never deleted: the operator removes them). A crash before the rename
imports again from the untouched old files; a crash after it finishes the move.
A dir holding both old files and a Raft store that was *not* made by an import
is refused with a message saying what to move away.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import zlib
from pathlib import Path

from node.consensus import HardState, Snapshot, SnapshotMeta
from node.storage.raftlog import RaftStore
from node.storage.wal import CorruptLogError, WriteAheadLog, _fsync_dir
from node.tree import DataTree, decode_txn

log = logging.getLogger("squall.node.storage")

MARKER = "IMPORTED-FROM-STANDALONE"
IMPORTED_DIR = "standalone-imported"
_SNAP_MAGIC = b"SQSNAP01"
_SNAP_HEAD = struct.Struct(">8sQQI")


class LegacyDataError(Exception):
    """An old standalone data dir that cannot be imported as it is; the message says what to do."""


def legacy_dirs(data_dir: Path) -> list[Path]:
    """The old standalone format's directories present in ``data_dir``."""
    return [p for p in (data_dir / "wal", data_dir / "snapshots") if p.is_dir()]


def _read_snapshot(path: Path) -> DataTree:
    blob = path.read_bytes()
    if len(blob) < _SNAP_HEAD.size:
        raise ValueError(f"{len(blob)} bytes, shorter than the {_SNAP_HEAD.size}-byte header")
    magic, _zxid, n, crc = _SNAP_HEAD.unpack_from(blob, 0)
    if magic != _SNAP_MAGIC:
        raise ValueError(f"bad magic {magic!r} (not a squall snapshot)")
    payload = blob[_SNAP_HEAD.size :]
    if len(payload) != n or zlib.crc32(payload) != crc:
        raise ValueError("length or checksum mismatch")
    return DataTree.deserialize(payload)


def recover_legacy(data_dir: Path) -> tuple[DataTree, int]:
    """The old standalone node's state: (tree, log records replayed after its snapshot)."""
    tree = DataTree()
    snaps = (
        sorted((p for p in (data_dir / "snapshots").glob("snap-*.snap")), reverse=True)
        if (data_dir / "snapshots").is_dir()
        else []
    )
    for path in snaps:  # the newest that verifies (names sort by zxid: fixed-width hex)
        try:
            tree = _read_snapshot(path)
            break
        except (ValueError, OSError) as exc:
            log.error("import: old snapshot %s is unusable, trying an older one: %s", path, exc)
    replayed = 0
    if (data_dir / "wal").is_dir():
        wal = WriteAheadLog(data_dir / "wal")
        try:
            for payload in wal.recover():
                try:
                    txn = decode_txn(payload)
                except ValueError as exc:
                    raise CorruptLogError(
                        f"a record in {data_dir / 'wal'} passed its checksum but does not decode: {exc}"
                    ) from None
                if txn.zxid <= tree.last_zxid:
                    continue
                tree.apply(txn)
                replayed += 1
        finally:
            wal.close()
    return tree, replayed


def _has_state(raft_dir: Path) -> bool:
    if not raft_dir.is_dir():
        return False
    if any(raft_dir.glob("raft-snap-*.bin")):
        return True
    segs = list((raft_dir / "raft-wal").glob("wal-*.log")) if (raft_dir / "raft-wal").is_dir() else []
    return any(p.stat().st_size > 0 and p.read_bytes().strip(b"\0") for p in segs)


def _move_aside(data_dir: Path, old: list[Path]) -> None:
    dest = data_dir / IMPORTED_DIR
    dest.mkdir(exist_ok=True)
    for p in old:
        target = dest / p.name
        if target.exists():
            raise LegacyDataError(f"cannot move {p} aside: {target} exists already; move one of them elsewhere")
        os.replace(p, target)
    _fsync_dir(dest)
    _fsync_dir(data_dir)
    log.info("import: the old standalone files are kept in %s (remove them once you no longer need them)", dest)


def import_legacy(data_dir: Path, raft_dir: Path) -> bool:
    """Import ``data_dir``'s old standalone state into the Raft store at ``raft_dir``; True if it did.

    Does nothing for a dir without old files. See the module docstring for the steps and
    the crash rules.
    """
    old = legacy_dirs(data_dir)
    if not old:
        return False
    if _has_state(raft_dir):
        if (raft_dir / MARKER).exists():
            _move_aside(data_dir, old)  # a crash came between the import and the move
            return False
        raise LegacyDataError(
            f"{data_dir} holds both an old standalone node's files ({', '.join(p.name + '/' for p in old)}) and "
            f"a Raft store ({raft_dir.name}/) that was not imported from them; move one of them out of the data dir "
            "(the Raft store is what an ensemble member or a newer node wrote)"
        )
    tree, replayed = recover_legacy(data_dir)
    zxid = tree.last_zxid
    term = max(1, zxid >> 32)
    tmp = data_dir / (raft_dir.name + ".importing")
    if tmp.exists():
        shutil.rmtree(tmp)  # a crash during an earlier import: start over from the untouched old files
    from node.replica import Persist, snapshot_data  # the replica's snapshot format

    store = RaftStore(tmp)
    try:
        snap = Snapshot(SnapshotMeta(1, term, zxid), snapshot_data(tree))
        store.persist(Persist(snapshot=snap, hard_state=HardState(term, None, 1)))
        store.sync()
    finally:
        store.close()
    marker = tmp / MARKER
    marker.write_text(f"imported from the old standalone format at zxid 0x{zxid:x}\n", encoding="utf-8")
    fd = os.open(marker, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(tmp)
    if raft_dir.exists():
        shutil.rmtree(raft_dir)  # an empty store (no state, see _has_state): nothing is lost
    os.replace(tmp, raft_dir)
    _fsync_dir(data_dir)
    log.warning(
        "import: %s was an old standalone data dir; imported %d znodes, %d sessions, last zxid 0x%x "
        "(%d log records after its snapshot) into %s",
        data_dir,
        tree.node_count,
        len(tree.sessions),
        zxid,
        replayed,
        raft_dir,
    )
    _move_aside(data_dir, old)
    return True


__all__ = ["IMPORTED_DIR", "LegacyDataError", "MARKER", "import_legacy", "legacy_dirs", "recover_legacy"]
