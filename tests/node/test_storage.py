"""Durability: the write-ahead log's recovery rules, the data dir's lock, the one-time import of old dirs."""

from __future__ import annotations

import logging
import os
import random
import struct
import zlib
from pathlib import Path

import pytest

from node.consensus import HardState
from node.replica import Persist, Replica
from node.storage import (
    RAFT_DIR,
    CorruptLogError,
    LegacyDataError,
    RaftStore,
    StorageLockedError,
    WriteAheadLog,
    open_member_store,
)
from node.storage.legacy import IMPORTED_DIR, import_legacy
from node.storage.wal import HEADER_BYTES, encode_record
from node.tree import EPHEMERAL, OPEN_ACL_UNSAFE, CreateOp, CreateSessionOp, DataTree, SetDataOp, Txn, encode_txn

# ------------------------------------------------------------------ WAL


# The recovery-rule tests below write without preallocation, so that a file's end is its
# last record's end and damage can be placed by file size; preallocated segments have
# their own tests (test_preallocated_*).
def write_log(
    d: Path, payloads: list[bytes], segment_bytes: int = 1 << 20, preallocate_bytes: int = 0
) -> WriteAheadLog:
    wal = WriteAheadLog(d, segment_bytes=segment_bytes, preallocate_bytes=preallocate_bytes)
    assert list(wal.recover()) == []
    for i, p in enumerate(payloads, start=1):
        wal.append(p, key=i)
    wal.sync()
    wal.close()
    return wal


def recover(d: Path) -> list[bytes]:
    wal = WriteAheadLog(d)
    out = list(wal.recover())
    wal.close()
    return out


def only_segment(d: Path) -> Path:
    segs = sorted(d.glob("wal-*.log"))
    assert len(segs) == 1
    return segs[0]


PAYLOADS = [f"record-{i}".encode() * (i + 1) for i in range(10)]


def test_round_trip_and_append_after_recovery(tmp_path: Path) -> None:
    write_log(tmp_path, PAYLOADS)
    wal = WriteAheadLog(tmp_path)
    assert list(wal.recover()) == PAYLOADS
    wal.append(b"more", key=11)
    wal.sync()
    wal.close()
    assert recover(tmp_path) == PAYLOADS + [b"more"]


def test_group_commit_one_sync_for_many_appends(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, preallocate_bytes=0)
    list(wal.recover())
    for i in range(50):
        wal.append(b"x", key=i + 1)
    assert wal.pending == 50 * (HEADER_BYTES + 1)
    assert only_segment(tmp_path).stat().st_size == 0  # nothing written before sync
    wal.sync()
    assert wal.syncs == 1 and wal.pending == 0
    assert only_segment(tmp_path).stat().st_size == 50 * (HEADER_BYTES + 1)
    wal.close()


def test_append_before_recover_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        WriteAheadLog(tmp_path).append(b"x")
    wal = WriteAheadLog(tmp_path)
    list(wal.recover())
    with pytest.raises(ValueError):
        wal.append(b"")


@pytest.mark.parametrize("cut", [1, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 3])
def test_truncated_last_record_is_cut(tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture) -> None:
    write_log(tmp_path, PAYLOADS)
    seg = only_segment(tmp_path)
    full = seg.stat().st_size
    last_len = HEADER_BYTES + len(PAYLOADS[-1])
    with open(seg, "r+b") as f:
        f.truncate(full - last_len + cut)
    leftover = seg.read_bytes()[full - last_len :]
    with caplog.at_level(logging.WARNING, logger="squall.node.storage"):
        assert recover(tmp_path) == PAYLOADS[:-1]
    if leftover.count(0) == len(leftover):
        # Only zeros are left (the length field's high bytes): that is what unused,
        # preallocated space looks like, so it is the log's normal end, not a torn tail.
        assert "torn tail" not in caplog.text
    else:
        assert "torn tail" in caplog.text
        assert seg.stat().st_size == full - last_len  # the file was cut at the record boundary
    assert recover(tmp_path) == PAYLOADS[:-1]  # and stays clean


def test_torn_tail_with_garbage_payload_is_cut(tmp_path: Path) -> None:
    write_log(tmp_path, PAYLOADS)
    seg = only_segment(tmp_path)
    data = bytearray(seg.read_bytes())
    data[-2] ^= 0xFF  # the last record's payload was only partly written
    seg.write_bytes(bytes(data))
    assert recover(tmp_path) == PAYLOADS[:-1]


def test_zero_filled_tail_is_the_normal_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_log(tmp_path, PAYLOADS)
    seg = only_segment(tmp_path)
    with open(seg, "ab") as f:
        f.write(b"\0" * 4096)
    with caplog.at_level(logging.WARNING, logger="squall.node.storage"):
        assert recover(tmp_path) == PAYLOADS
    assert not caplog.records  # zeros are unused (preallocated) space, not damage
    end = sum(HEADER_BYTES + len(p) for p in PAYLOADS)
    wal = WriteAheadLog(tmp_path)
    list(wal.recover())
    wal.append(b"after", key=99)  # written at the records' end, inside the zeros
    wal.close()
    assert recover(tmp_path) == PAYLOADS + [b"after"]
    assert seg.read_bytes()[end : end + HEADER_BYTES + 5] == encode_record(b"after")


def test_preallocated_segment_grows_in_zero_filled_steps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    step = 4096
    wal = WriteAheadLog(tmp_path, preallocate_bytes=step)
    assert list(wal.recover()) == []
    payloads = [bytes([65 + i % 26]) * 300 for i in range(40)]  # ~12.5 KB of records
    for i, p in enumerate(payloads, start=1):
        wal.append(p, key=1)
        if i % 7 == 0:
            wal.sync()
    wal.close()
    seg = only_segment(tmp_path)
    end = sum(HEADER_BYTES + len(p) for p in payloads)
    assert seg.stat().st_size == -(-end // step) * step  # whole steps, at least the records
    assert seg.read_bytes()[end:].count(0) == seg.stat().st_size - end  # the rest is zeros
    with caplog.at_level(logging.WARNING, logger="squall.node.storage"):
        assert recover(tmp_path) == payloads
    assert not caplog.records


def test_torn_record_in_a_preallocated_segment_is_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_log(tmp_path, PAYLOADS, preallocate_bytes=1 << 16)
    seg = only_segment(tmp_path)
    end = sum(HEADER_BYTES + len(p) for p in PAYLOADS)
    with open(seg, "r+b") as f:  # the next record's write died after 10 bytes; zeros follow
        f.seek(end)
        f.write(encode_record(b"the-torn-one")[:10])
    with caplog.at_level(logging.WARNING, logger="squall.node.storage"):
        assert recover(tmp_path) == PAYLOADS
    assert any("torn tail" in r.getMessage() for r in caplog.records)
    wal = WriteAheadLog(tmp_path, preallocate_bytes=1 << 16)
    list(wal.recover())
    wal.append(b"next", key=50)
    wal.close()
    assert recover(tmp_path) == PAYLOADS + [b"next"]


def test_corrupt_middle_record_in_a_preallocated_segment_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, PAYLOADS, preallocate_bytes=1 << 16)
    seg = only_segment(tmp_path)
    data = bytearray(seg.read_bytes())
    data[sum(HEADER_BYTES + len(p) for p in PAYLOADS[:3]) + HEADER_BYTES] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        recover(tmp_path)


def test_negative_preallocation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preallocate_bytes"):
        WriteAheadLog(tmp_path, preallocate_bytes=-1)


@pytest.mark.parametrize("where", ["payload", "length", "header-crc"])
def test_corrupt_middle_record_is_refused(tmp_path: Path, where: str) -> None:
    write_log(tmp_path, PAYLOADS)
    seg = only_segment(tmp_path)
    data = bytearray(seg.read_bytes())
    offset = sum(HEADER_BYTES + len(p) for p in PAYLOADS[:4])
    flip = {"payload": offset + HEADER_BYTES + 2, "length": offset + 2, "header-crc": offset + 9}[where]
    data[flip] ^= 0x40
    seg.write_bytes(bytes(data))
    size = seg.stat().st_size
    with pytest.raises(CorruptLogError) as e:
        recover(tmp_path)
    assert f"offset {offset}" in str(e.value) and seg.name in str(e.value)
    assert seg.stat().st_size == size  # nothing was cut


def test_damage_in_a_sealed_segment_is_refused_even_at_its_end(tmp_path: Path) -> None:
    write_log(tmp_path, PAYLOADS, segment_bytes=64)
    segs = sorted(tmp_path.glob("wal-*.log"))
    assert len(segs) > 2
    with open(segs[0], "r+b") as f:
        f.truncate(segs[0].stat().st_size - 1)
    with pytest.raises(CorruptLogError):
        recover(tmp_path)


def test_segments_roll_and_purge(tmp_path: Path) -> None:
    wal = write_log(tmp_path, PAYLOADS, segment_bytes=64)
    assert recover(tmp_path) == PAYLOADS
    wal = WriteAheadLog(tmp_path, segment_bytes=64)
    list(wal.recover())
    starts = [k for k, _ in wal.segments()]
    assert starts == sorted(starts) and starts[0] == 1
    removed = wal.purge_through(starts[2] - 1)  # everything before the third segment is covered
    assert len(removed) == 2
    assert [k for k, _ in wal.segments()] == starts[2:]
    wal.close()


# ------------------------------------------------------------------ the data dir: lock, one-time import


def old_standalone_dir(d: Path, txns: list[Txn], snapshot_at: tuple[int, ...] = ()) -> DataTree:
    """Write what the old standalone node wrote: ``wal/`` segments of encoded txns and
    ``snapshots/snap-<zxid>.snap`` (SQSNAP01 | zxid | length | crc32 | tree); returns the tree."""
    wal = WriteAheadLog(d / "wal", preallocate_bytes=0)
    assert list(wal.recover()) == []
    tree = DataTree()
    for txn in txns:
        tree.apply(txn)
        wal.append(encode_txn(txn), txn.zxid)
        if txn.zxid in snapshot_at:
            (d / "snapshots").mkdir(exist_ok=True)
            payload = tree.serialize()
            head = struct.pack(">8sQQI", b"SQSNAP01", txn.zxid, len(payload), zlib.crc32(payload))
            (d / "snapshots" / f"snap-{txn.zxid:016x}.snap").write_bytes(head + payload)
    wal.sync()
    wal.close()
    return tree


def txns(n: int, epoch: int = 1) -> list[Txn]:
    z = epoch << 32
    out = [
        Txn(z + 1, 1001, 0, (), CreateSessionOp(7, 4000, b"k" * 16)),
        Txn(z + 2, 1002, 7, (), CreateOp("/e", b"", OPEN_ACL_UNSAFE, EPHEMERAL)),
    ]
    for i in range(n):
        out.append(Txn(z + 3 + i, 1003 + i, 7, (), CreateOp(f"/n{i}", b"v", OPEN_ACL_UNSAFE)))
    out.append(Txn(z + 3 + n, 2000, 7, (), SetDataOp("/n0", b"w")))
    return out


def replica_of(raft_dir: Path) -> Replica:
    store = RaftStore(raft_dir)
    try:
        return Replica(1, [1], store.state(), random.Random(1))
    finally:
        store.close()


def test_an_old_standalone_dir_is_imported_once_with_sessions_and_ephemerals(tmp_path: Path) -> None:
    tree = old_standalone_dir(tmp_path, txns(30), snapshot_at=((1 << 32) + 12,))
    assert import_legacy(tmp_path, tmp_path / RAFT_DIR)
    r = replica_of(tmp_path / RAFT_DIR)
    assert r.tree.digest() == tree.digest() and r.last_zxid == tree.last_zxid == (1 << 32) + 33
    assert r.tree.sessions[7].password == b"k" * 16 and r.tree.get_ephemerals(7) == ["/e"]
    assert r.tree.get_data("/n0", ())[0] == b"w"
    snap = r.raft.log.snapshot.meta
    assert (snap.index, snap.term, snap.zxid) == (1, 1, tree.last_zxid)  # the next term's zxids are above
    assert not (tmp_path / "wal").exists() and not (tmp_path / "snapshots").exists()
    kept = tmp_path / IMPORTED_DIR
    assert sorted(p.name for p in kept.iterdir()) == ["snapshots", "wal"]  # moved aside, never deleted
    assert not import_legacy(tmp_path, tmp_path / RAFT_DIR)  # once only
    assert replica_of(tmp_path / RAFT_DIR).tree.digest() == tree.digest()


def test_the_import_cuts_a_torn_tail_and_falls_back_to_an_older_snapshot(tmp_path: Path) -> None:
    all_txns = txns(20)
    old_standalone_dir(tmp_path, all_txns, snapshot_at=((1 << 32) + 5, (1 << 32) + 15))
    expected = DataTree()
    for t in all_txns[:-1]:
        expected.apply(t)
    seg = only_segment(tmp_path / "wal")
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 3)  # the last write died mid-record: it was never acknowledged
    newest = sorted((tmp_path / "snapshots").glob("snap-*.snap"))[-1]
    newest.write_bytes(b"garbage")
    assert import_legacy(tmp_path, tmp_path / RAFT_DIR)
    assert replica_of(tmp_path / RAFT_DIR).tree.digest() == expected.digest()


def test_a_corrupt_old_log_is_refused_and_nothing_is_moved(tmp_path: Path) -> None:
    old_standalone_dir(tmp_path, txns(5))
    seg = only_segment(tmp_path / "wal")
    data = bytearray(seg.read_bytes())
    data[HEADER_BYTES + 10] ^= 1  # inside the first record, with intact ones after it
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        import_legacy(tmp_path, tmp_path / RAFT_DIR)
    assert (tmp_path / "wal").is_dir() and not (tmp_path / RAFT_DIR).exists()


def test_a_crash_between_the_import_and_the_move_finishes_the_move(tmp_path: Path) -> None:
    tree = old_standalone_dir(tmp_path, txns(5))
    assert import_legacy(tmp_path, tmp_path / RAFT_DIR)
    for name in ("wal", "snapshots"):  # as if the process died right after renaming the new store
        if (tmp_path / IMPORTED_DIR / name).exists():
            os.replace(tmp_path / IMPORTED_DIR / name, tmp_path / name)
    (tmp_path / (RAFT_DIR + ".importing")).mkdir()  # and an earlier attempt's leftovers
    assert not import_legacy(tmp_path, tmp_path / RAFT_DIR)
    assert not (tmp_path / "wal").exists() and (tmp_path / IMPORTED_DIR / "wal").is_dir()
    assert replica_of(tmp_path / RAFT_DIR).tree.digest() == tree.digest()


def test_old_files_beside_a_raft_store_they_did_not_make_are_refused(tmp_path: Path) -> None:
    store = RaftStore(tmp_path / RAFT_DIR)
    store.persist(Persist(hard_state=HardState(3, 2, 0)))
    store.sync()
    store.close()
    old_standalone_dir(tmp_path, txns(2))
    with pytest.raises(LegacyDataError, match="move one of them out of the data dir"):
        import_legacy(tmp_path, tmp_path / RAFT_DIR)


def test_the_data_dir_is_locked_and_released_after_a_failed_open(tmp_path: Path) -> None:
    store, fd = open_member_store(tmp_path)
    try:
        with pytest.raises(StorageLockedError, match="in use by another process"):
            open_member_store(tmp_path)
    finally:
        store.close()
        os.close(fd)
    old_standalone_dir(tmp_path / "bad", txns(1))
    seg = only_segment(tmp_path / "bad" / "wal")
    data = bytearray(seg.read_bytes())
    data[HEADER_BYTES + 10] ^= 1
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        open_member_store(tmp_path / "bad")
    with pytest.raises(CorruptLogError):
        open_member_store(tmp_path / "bad")  # not StorageLockedError: the failed open let go of the lock


@pytest.mark.integration
def test_a_node_started_on_an_old_standalone_dir_serves_its_data(tmp_path: Path) -> None:
    from kazoo.client import KazooClient

    from node.config import NodeConfig
    from node.server import BackgroundNode
    from tests.node.servers import free_port

    old_standalone_dir(tmp_path / "d", txns(3), snapshot_at=((1 << 32) + 2,))
    cfg = NodeConfig(data_dir=tmp_path / "d", port=free_port(), tick_ms=100).validate()
    with BackgroundNode(cfg) as n:
        c = KazooClient(hosts=n.hosts)
        c.start(timeout=10)
        try:
            assert sorted(c.get_children("/")) == ["e", "n0", "n1", "n2", "zookeeper"]
            assert c.get("/n0")[0] == b"w" and c.exists("/e").ephemeralOwner == 7
            assert c.create("/new") == "/new" and c.exists("/new").czxid >> 32 == 2  # a new epoch
        finally:
            c.stop()
            c.close()


# ------------------------------------------------------------------ properties

import tempfile  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

RECORDS = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(records=RECORDS, data=st.data())
def test_any_truncation_recovers_a_prefix(records: list[bytes], data) -> None:
    with tempfile.TemporaryDirectory() as d:
        write_log(Path(d), records)
        seg = only_segment(Path(d))
        size = seg.stat().st_size
        cut = data.draw(st.integers(0, size))
        with open(seg, "r+b") as f:
            f.truncate(cut)
        got = recover(Path(d))
        assert got == records[: len(got)]
        boundaries = [0]
        for r in records:
            boundaries.append(boundaries[-1] + HEADER_BYTES + len(r))
        whole = max(i for i, b in enumerate(boundaries) if b <= cut)
        assert len(got) == whole  # every complete record survives


@settings(max_examples=150, deadline=None)
@given(records=RECORDS, data=st.data())
def test_a_flipped_byte_never_yields_wrong_records(records: list[bytes], data) -> None:
    with tempfile.TemporaryDirectory() as d:
        write_log(Path(d), records)
        seg = only_segment(Path(d))
        blob = bytearray(seg.read_bytes())
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] ^= data.draw(st.integers(1, 255))
        seg.write_bytes(bytes(blob))
        last_start = len(blob) - HEADER_BYTES - len(records[-1])
        try:
            got = recover(Path(d))
        except CorruptLogError:
            assert at < last_start  # only damage before the last record is refused
            return
        assert got == records[:-1] and at >= last_start  # damage in the last record: a torn tail
