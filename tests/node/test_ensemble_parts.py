"""Fast tests of the ensemble shell's parts: the raft store, the peer transport, peer/config parsing.

No subprocesses: the store works in a temp dir; the transport runs two
members' transports in one event loop on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import pytest

from node.config import ConfigError, load_config
from node.consensus import Entry, HardState, Message, MessageType, Snapshot, SnapshotMeta
from node.peer import PeerAddress, PeerTransport, parse_peers
from node.replica import Forward, Persist, RaftMsg, ReplicaDisk, Touch
from node.storage.raftlog import RaftLogError, RaftStore
from tests.node.servers import free_port


def _entries(first: int, last: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(Entry(term, i, (term << 32) | i, data=f"e{i}".encode()) for i in range(first, last + 1))


# ---------------------------------------------------------------- RaftStore


def test_store_recovers_exactly_what_the_reference_disk_holds(tmp_path: Path) -> None:
    steps = [
        Persist(entries=_entries(1, 5), hard_state=HardState(1, 1, 3)),
        Persist(entries=_entries(4, 6, term=2), hard_state=HardState(2, 2, 5)),  # overwrites 4..5
        Persist(compaction=Snapshot(SnapshotMeta(3, 1, (1 << 32) | 3), b"state@3")),
        Persist(entries=_entries(7, 8, term=2)),
        Persist(hard_state=HardState(2, 2, 8)),
    ]
    ref = ReplicaDisk()
    store = RaftStore(tmp_path)
    for p in steps:
        ref.apply(p)
        store.persist(p)
    store.sync()
    store.close()
    again = RaftStore(tmp_path)
    try:
        assert again.state() == ref.state()
        assert again.state().snapshot.data == b"state@3"
        assert [e.index for e in again.state().entries] == [4, 5, 6, 7, 8]
        assert [e.term for e in again.state().entries][:3] == [2, 2, 2]
    finally:
        again.close()


def test_store_installed_snapshot_replaces_the_log_and_old_files_are_purged(tmp_path: Path) -> None:
    store = RaftStore(tmp_path)
    store.persist(Persist(entries=_entries(1, 10), hard_state=HardState(1, None, 10)))
    store.persist(Persist(compaction=Snapshot(SnapshotMeta(5, 1, 5), b"five")))
    store.persist(Persist(snapshot=Snapshot(SnapshotMeta(50, 3, (3 << 32) | 1), b"fifty"),
                          hard_state=HardState(3, None, 50)))
    store.sync()
    store.close()
    snaps = sorted(p.name for p in tmp_path.glob("raft-snap-*.bin"))
    assert snaps == [f"raft-snap-{50:016x}.bin"]
    assert len(list((tmp_path / "raft-wal").glob("wal-*.log"))) == 1  # older segments purged at the checkpoint
    again = RaftStore(tmp_path)
    try:
        st = again.state()
        assert st.snapshot.meta.index == 50 and st.snapshot.data == b"fifty"
        assert st.entries == () and st.hard_state == HardState(3, None, 50)
    finally:
        again.close()


def test_store_cuts_a_torn_tail_and_keeps_what_was_synced(tmp_path: Path) -> None:
    store = RaftStore(tmp_path)
    store.persist(Persist(entries=_entries(1, 3), hard_state=HardState(1, 1, 0)))
    store.sync()
    store.close()
    seg = sorted((tmp_path / "raft-wal").glob("wal-*.log"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage-half-record")
    again = RaftStore(tmp_path)
    try:
        assert [e.index for e in again.state().entries] == [1, 2, 3]
    finally:
        again.close()


def test_store_refuses_a_missing_snapshot_file(tmp_path: Path) -> None:
    store = RaftStore(tmp_path)
    store.persist(Persist(entries=_entries(1, 4)))
    store.persist(Persist(compaction=Snapshot(SnapshotMeta(2, 1, 2), b"two")))
    store.close()
    for p in tmp_path.glob("raft-snap-*.bin"):
        p.unlink()
    with pytest.raises(RaftLogError, match="missing"):
        RaftStore(tmp_path)


# ---------------------------------------------------------------- peers


def test_parse_peers_accepts_the_documented_form_and_explains_errors() -> None:
    peers = parse_peers("1=127.0.0.1:2181:2888, 2=127.0.0.1:2182:2889,3=localhost:2183:2890")
    assert peers[3] == PeerAddress(3, "localhost", 2183, 2890)
    for bad, why in [("1=h:1", "ID=HOST"), ("1=h:1:2,1=h:3:4,2=h:5:6", "twice"), ("1=h:1:2,2=h:3:4", "1, 3 or 5"),
                     ("0=h:1:2", "out of range"), ("x=h:1:2", "ID=HOST")]:
        with pytest.raises(ValueError, match=why):
            parse_peers(bad)


def test_config_file_takes_zookeeper_server_lines(tmp_path: Path) -> None:
    cfg_file = tmp_path / "zoo.cfg"
    cfg_file.write_text("dataDir=%s\nclientPort=2181\nserverId=2\n"
                        "server.1=127.0.0.1:2888:3888;2181\nserver.2=127.0.0.1:2889:3889;127.0.0.1:2182\n"
                        "server.3=127.0.0.1:2890:3890\n" % tmp_path)
    cfg, _ = load_config(cfg_file, {})
    assert cfg.peers == "1=127.0.0.1:2181:2888,2=127.0.0.1:2182:2889,3=127.0.0.1:2181:2890"
    assert cfg.server_id == 2
    bad = tmp_path / "bad.cfg"
    bad.write_text("dataDir=%s\nserver.1=127.0.0.1\n" % tmp_path)
    with pytest.raises(ConfigError, match="host:peer_port"):
        load_config(bad, {})


def _pair(received: dict[int, list]) -> tuple[PeerTransport, PeerTransport]:
    peers = {i: PeerAddress(i, "127.0.0.1", 0, free_port()) for i in (1, 2, 3)}
    t1 = PeerTransport(1, peers, lambda m: received[1].append(m), backoff_max_s=0.05)
    t2 = PeerTransport(2, peers, lambda m: received[2].append(m), backoff_max_s=0.05)
    return t1, t2


async def _until(cond, limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def test_transport_delivers_raft_and_replica_messages_both_ways() -> None:
    received: dict[int, list] = {1: [], 2: []}

    async def main() -> None:
        t1, t2 = _pair(received)
        await t1.start()
        await t2.start()
        try:
            await _until(lambda: t1.connected() == [2] and t2.connected() == [1])
            raft = RaftMsg(Message(MessageType.HEARTBEAT, 1, 2, term=4, commit=7))
            assert t1.send(raft)
            assert t2.send(Forward(2, 1, 0x77, 5, b"txn-bytes"))
            assert t2.send(Touch(2, 1, (1, 2, 3)))
            assert not t1.send(Touch(1, 3, (9,)))  # peer 3 never came up: dropped, not queued
            await _until(lambda: len(received[2]) == 1 and len(received[1]) == 2)
            assert received[2] == [raft]
            assert received[1] == [Forward(2, 1, 0x77, 5, b"txn-bytes"), Touch(2, 1, (1, 2, 3))]
        finally:
            await t1.close()
            await t2.close()

    asyncio.run(main())


def test_a_malformed_frame_closes_only_that_link_and_the_sender_reconnects(caplog) -> None:
    received: dict[int, list] = {1: [], 2: []}

    async def main() -> None:
        t1, t2 = _pair(received)
        await t1.start()
        await t2.start()
        try:
            await _until(lambda: t1.connected() == [2])
            junk = b"\x09\x01\x00\x00\x00\x01\x00\x00\x00\x02"  # version 9: not spoken here
            t1.links[2].writer.write(struct.pack(">I", len(junk)) + junk)
            await _until(lambda: t2.bad_frames == 1)
            await _until(lambda: t1.connected() == [2] and t1.links[2].connects >= 2)
            assert t1.send(Touch(1, 2, (5,)))
            await _until(lambda: received[2] == [Touch(1, 2, (5,))])
        finally:
            await t1.close()
            await t2.close()

    with caplog.at_level(logging.WARNING, logger="squall.node.peer"):
        asyncio.run(main())
    assert any("malformed frame" in r.getMessage() and "version 9" in r.getMessage() for r in caplog.records)


def test_an_oversized_frame_is_refused() -> None:
    received: dict[int, list] = {1: [], 2: []}

    async def main() -> None:
        t1, t2 = _pair(received)
        t2.max_frame_bytes = 1024
        await t1.start()
        await t2.start()
        try:
            await _until(lambda: t1.connected() == [2])
            t1.links[2].writer.write(struct.pack(">I", 1 << 20))
            await _until(lambda: t2.bad_frames == 1)
            assert received[2] == []
        finally:
            await t1.close()
            await t2.close()

    asyncio.run(main())
