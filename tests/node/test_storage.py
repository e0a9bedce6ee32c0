"""Durability: the write-ahead log's recovery rules, snapshots, and Storage recovery."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from node.storage import CorruptLogError, Snapshots, Storage, StorageLockedError, WriteAheadLog
from node.storage.wal import HEADER_BYTES, encode_record
from node.tree import OPEN_ACL_UNSAFE, CreateOp, CreateSessionOp, EPHEMERAL, SetDataOp, Txn

# ------------------------------------------------------------------ WAL


# The recovery-rule tests below write without preallocation, so that a file's end is its
# last record's end and damage can be placed by file size; preallocated segments have
# their own tests (test_preallocated_*).
def write_log(d: Path, payloads: list[bytes], segment_bytes: int = 1 << 20, preallocate_bytes: int = 0) -> WriteAheadLog:
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
    leftover = seg.read_bytes()[full - last_len:]
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
    assert seg.read_bytes()[end: end + HEADER_BYTES + 5] == encode_record(b"after")


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


# ------------------------------------------------------------------ snapshots


def test_snapshots_keep_newest_and_skip_damaged(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path, keep=2)
    for z in (5, 9, 12):
        snaps.write(z, f"state-{z}".encode())
    assert [z for z, _ in snaps.list()] == [9, 12]
    assert snaps.load_newest() == (12, b"state-12")
    newest = snaps.list()[-1][1]
    newest.write_bytes(newest.read_bytes()[:-1] + b"?")
    assert snaps.load_newest() == (9, b"state-9")
    (tmp_path / "snap-00000000000000ff.snap.tmp").write_bytes(b"half")
    Snapshots(tmp_path, keep=2)
    assert not list(tmp_path.glob("*.tmp"))  # crash leftovers are removed


# ------------------------------------------------------------------ Storage


class Writer:
    """Logs and applies txns the way the server does (log, apply, flush)."""

    def __init__(self, storage: Storage) -> None:
        self.s = storage
        self.zxid = storage.last_zxid

    def do(self, op, session=7) -> None:
        self.zxid += 1
        txn = Txn(self.zxid, 1000 + self.zxid, session, (), op)
        self.s.log(txn)
        self.s.tree.apply(txn)


def test_storage_recovers_snapshot_plus_log_tail(tmp_path: Path) -> None:
    s = Storage.open(tmp_path, snapshot_every=40)
    w = Writer(s)
    w.do(CreateSessionOp(7, 4000, b"k" * 16), session=0)
    w.do(CreateOp("/e", b"", OPEN_ACL_UNSAFE, EPHEMERAL))
    snapshots = 0
    for i in range(100):
        w.do(CreateOp(f"/n{i}", b"v", OPEN_ACL_UNSAFE))
        s.flush()
        snapshots += s.maybe_snapshot()
    for i in range(10):
        w.do(SetDataOp(f"/n{i}", b"w"))
    s.flush()
    expected = s.tree.digest()
    s.close()
    assert snapshots == 2
    r = Storage.open(tmp_path)
    try:
        assert r.tree.digest() == expected
        assert r.replayed == 102 - 80 + 10  # only the tail after the newest snapshot
        assert r.sessions[7].password == b"k" * 16 and r.tree.get_ephemerals(7) == ["/e"]
        storage, tree, last = r  # the unpacking the server uses
        assert storage is r and tree is r.tree and last == 112
    finally:
        r.close()


def test_storage_survives_an_unsynced_torn_tail(tmp_path: Path) -> None:
    s = Storage.open(tmp_path, preallocate_bytes=0)  # so that the file's end is the last record's
    w = Writer(s)
    w.do(CreateSessionOp(7, 4000, b"k" * 16), session=0)
    for i in range(5):
        w.do(CreateOp(f"/n{i}", b"v", OPEN_ACL_UNSAFE))
    s.flush()
    acked = s.tree.digest()[2]
    w.do(CreateOp("/unacked", b"v", OPEN_ACL_UNSAFE))
    s.flush()
    s.close()
    seg = only_segment(tmp_path / "wal")
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 3)  # the last write died mid-record
    r = Storage.open(tmp_path, preallocate_bytes=0)
    try:
        assert r.tree.digest()[2] == acked and r.last_zxid == 6
    finally:
        r.close()


def test_storage_falls_back_to_an_older_snapshot(tmp_path: Path) -> None:
    s = Storage.open(tmp_path, snapshot_every=10)
    w = Writer(s)
    w.do(CreateSessionOp(7, 4000, b"k" * 16), session=0)
    for i in range(35):
        w.do(CreateOp(f"/n{i}", b"v", OPEN_ACL_UNSAFE))
        s.flush()
        s.maybe_snapshot()
    expected = s.tree.digest()
    s.close()
    snaps = sorted((tmp_path / "snapshots").glob("snap-*.snap"))
    assert len(snaps) == 3
    snaps[-1].write_bytes(b"garbage")
    r = Storage.open(tmp_path)
    try:
        assert r.tree.digest() == expected  # older snapshot + the log it did not purge
    finally:
        r.close()


def test_storage_refuses_corrupt_log_and_a_second_user(tmp_path: Path) -> None:
    s = Storage.open(tmp_path)
    with pytest.raises(StorageLockedError):
        Storage.open(tmp_path)
    w = Writer(s)
    w.do(CreateSessionOp(7, 4000, b"k" * 16), session=0)
    for i in range(5):
        w.do(CreateOp(f"/n{i}", b"v", OPEN_ACL_UNSAFE))
    s.flush()
    s.close()
    seg = only_segment(tmp_path / "wal")
    data = bytearray(seg.read_bytes())
    data[len(encode_record(b"")) + 30] ^= 1
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        Storage.open(tmp_path)
    s2 = None
    try:
        seg.unlink()
        s2 = Storage.open(tmp_path)  # the lock was released after the failed open
        assert s2.last_zxid == 0
    finally:
        if s2 is not None:
            s2.close()


def test_write_snapshot_from_serialized_bytes(tmp_path: Path) -> None:
    s = Storage.open(tmp_path)
    w = Writer(s)
    w.do(CreateSessionOp(7, 4000, b"k" * 16), session=0)
    w.do(CreateOp("/a", b"v", OPEN_ACL_UNSAFE))
    s.write_snapshot(s.tree.serialize(), s.tree.last_zxid)
    w.do(CreateOp("/b", b"v", OPEN_ACL_UNSAFE))
    s.flush()
    expected = s.tree.digest()
    s.close()
    assert os.listdir(tmp_path / "snapshots") == ["snap-0000000000000002.snap"]
    r = Storage.open(tmp_path)
    try:
        assert r.tree.digest() == expected and r.replayed == 1
    finally:
        r.close()


# ------------------------------------------------------------------ properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
import tempfile  # noqa: E402

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
