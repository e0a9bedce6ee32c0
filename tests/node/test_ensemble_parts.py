"""Fast tests of the ensemble shell's parts: the raft store, the peer transport, peer/config parsing.

No subprocesses: the store works in a temp dir; the transport runs two
members' transports in one event loop on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from pathlib import Path

import pytest

import node.peer
from node.config import ConfigError, load_config
from node.consensus import Entry, HardState, Message, MessageType, Snapshot, SnapshotMeta
from node.peer import PeerAddress, PeerTransport, _Inbound, parse_peers
from node.replica import Forward, Persist, RaftMsg, ReplicaDisk, Touch, encode_peer
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
    store = RaftStore(tmp_path, retain_snapshots=1)
    store.persist(Persist(entries=_entries(1, 10), hard_state=HardState(1, None, 10)))
    store.persist(Persist(compaction=Snapshot(SnapshotMeta(5, 1, 5), b"five")))
    store.persist(
        Persist(snapshot=Snapshot(SnapshotMeta(50, 3, (3 << 32) | 1), b"fifty"), hard_state=HardState(3, None, 50))
    )
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


def test_a_snapshot_from_the_leader_closes_the_members_client_connections(tmp_path: Path) -> None:
    """Installing the leader's snapshot skips the watch events of the changes it holds, so the
    member closes its client connections (its sessions live on): clients reconnect and
    re-register their watches, as ZooKeeper's learners do after a resync. A local compaction
    changes nothing clients see and closes nothing."""
    from node.server import MemberServer, StoreDisk

    installs: list[int] = []
    disk = StoreDisk(RaftStore(tmp_path), installed=lambda: installs.append(1))
    try:
        disk.persist(Persist(entries=_entries(1, 5), hard_state=HardState(1, None, 5)))
        disk.persist(Persist(compaction=Snapshot(SnapshotMeta(5, 1, 5), b"five")))
        assert installs == []
        disk.persist(Persist(snapshot=Snapshot(SnapshotMeta(50, 3, (3 << 32) | 1), b"fifty")))
        assert installs == [1]
    finally:
        disk.store.close()

    class Conn:
        def __init__(self) -> None:
            self.aborted: list[str] = []

        def abort(self, reason: str) -> None:
            self.aborted.append(reason)

    server = MemberServer.__new__(MemberServer)  # only the connections matter here
    server.connections = {Conn(), Conn()}  # type: ignore[arg-type]
    server._snapshot_installed()
    assert all(c.aborted and "installed a snapshot" in c.aborted[0] for c in server.connections)  # type: ignore[attr-defined]


def _compact_at(store: RaftStore, index: int) -> None:
    store.persist(Persist(entries=_entries(index, index), hard_state=HardState(1, None, index)))
    store.persist(Persist(compaction=Snapshot(SnapshotMeta(index, 1, index), f"s{index}".encode())))
    store.sync()


def test_store_retains_snap_retain_count_snapshots_and_purges_superseded_segments(tmp_path: Path) -> None:
    store = RaftStore(tmp_path, retain_snapshots=3)
    for index in range(1, 6):
        _compact_at(store, index)
    store.close()
    assert sorted(p.name for p in tmp_path.glob("raft-snap-*.bin")) == [f"raft-snap-{i:016x}.bin" for i in (3, 4, 5)]
    assert len(list((tmp_path / "raft-wal").glob("wal-*.log"))) == 1
    again = RaftStore(tmp_path)
    try:
        assert again.state().snapshot.meta.index == 5 and again.state().snapshot.data == b"s5"
    finally:
        again.close()


def test_store_with_a_purge_interval_keeps_old_segments_until_it_elapses(tmp_path: Path) -> None:
    store = RaftStore(tmp_path, retain_snapshots=3, purge_interval_s=3600)
    for index in range(1, 6):
        _compact_at(store, index)
    store.close()
    assert len(list((tmp_path / "raft-wal").glob("wal-*.log"))) > 1  # an hour has not passed: nothing purged
    again = RaftStore(tmp_path)  # the old segments replay before the checkpoints that supersede them
    try:
        assert again.state().snapshot.meta.index == 5 and again.state().snapshot.data == b"s5"
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
    for bad, why in [
        ("1=h:1", "ID=HOST"),
        ("1=h:1:2,1=h:3:4,2=h:5:6", "twice"),
        ("1=h:1:2,2=h:3:4", "1, 3 or 5"),
        ("0=h:1:2", "out of range"),
        ("x=h:1:2", "ID=HOST"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_peers(bad)


def test_config_file_takes_zookeeper_server_lines(tmp_path: Path) -> None:
    cfg_file = tmp_path / "zoo.cfg"
    cfg_file.write_text(
        f"dataDir={tmp_path}\nclientPort=2181\nserverId=2\n"
        "server.1=127.0.0.1:2888:3888;2181\nserver.2=127.0.0.1:2889:3889;127.0.0.1:2182\n"
        "server.3=127.0.0.1:2890:3890\n"
    )
    cfg, _ = load_config(cfg_file, {})
    # the election port is kept, to show the membership in /zookeeper/config as ZooKeeper does
    assert cfg.peers == "1=127.0.0.1:2181:2888:3888,2=127.0.0.1:2182:2889:3889,3=127.0.0.1:2181:2890:3890"
    assert parse_peers(cfg.peers)[2] == PeerAddress(2, "127.0.0.1", 2182, 2889, 3889)
    assert cfg.server_id == 2
    bad = tmp_path / "bad.cfg"
    bad.write_text(f"dataDir={tmp_path}\nserver.1=127.0.0.1\n")
    with pytest.raises(ConfigError, match="host:peer_port"):
        load_config(bad, {})


def _pair(received: dict[int, list]) -> tuple[PeerTransport, PeerTransport]:
    peers = {i: PeerAddress(i, "127.0.0.1", 0, free_port()) for i in (1, 2, 3)}
    t1 = PeerTransport(1, peers, lambda m: received[1].append(m), backoff_max_s=0.05)
    t2 = PeerTransport(2, peers, lambda m: received[2].append(m), backoff_max_s=0.05)
    return t1, t2


@contextlib.asynccontextmanager
async def _running(*transports: PeerTransport):
    """Start the transports; close them on the way out, also when the body failed."""
    for t in transports:
        await t.start()
    try:
        yield
    finally:
        for t in transports:
            await t.close()


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
        async with _running(t1, t2):
            await _until(lambda: t1.connected() == [2] and t2.connected() == [1])
            raft = RaftMsg(Message(MessageType.HEARTBEAT, 1, 2, term=4, commit=7))
            assert t1.send(raft)
            assert t2.send(Forward(2, 1, 0x77, 5, b"txn-bytes"))
            assert t2.send(Touch(2, 1, (1, 2, 3)))
            assert not t1.send(Touch(1, 3, (9,)))  # peer 3 never came up: dropped, not queued
            await _until(lambda: len(received[2]) == 1 and len(received[1]) == 2)
            assert received[2] == [raft]
            assert received[1] == [Forward(2, 1, 0x77, 5, b"txn-bytes"), Touch(2, 1, (1, 2, 3))]

    asyncio.run(main())


def test_a_peer_that_goes_away_is_reported_once_its_link_drops() -> None:
    """on_link_lost names the peer whose link closed (it is how a follower learns at once
    that its leader's process died), and the link comes back when the peer does."""
    lost: list[int] = []
    peers = {i: PeerAddress(i, "127.0.0.1", 0, free_port()) for i in (1, 2, 3)}

    async def main() -> None:
        t1 = PeerTransport(1, peers, lambda m: None, on_link_lost=lost.append, backoff_max_s=0.05)
        t2 = PeerTransport(2, peers, lambda m: None, backoff_max_s=0.05)
        await t1.start()
        await t2.start()
        try:
            await _until(lambda: t1.connected() == [2])
            assert lost == []
            await t2.close()  # peer 2 goes away
            await _until(lambda: lost[:1] == [2])
            assert set(lost) == {2}  # peer 3 was never up, so never lost
            t2b = PeerTransport(2, peers, lambda m: None, backoff_max_s=0.05)
            await t2b.start()
            try:
                await _until(lambda: t1.connected() == [2])
            finally:
                await t2b.close()
        finally:
            await t1.close()

    asyncio.run(main())


def test_a_peer_that_connects_to_us_cuts_short_our_backoff_towards_it() -> None:
    """A restarted member dials its peers as it starts: their links to it, backing off
    since it went down, redial at once instead of when their backoff runs out."""
    peers = {i: PeerAddress(i, "127.0.0.1", 0, free_port()) for i in (1, 2, 3)}

    async def main() -> None:
        # 60 s between attempts: without the wake-up the link to 2 would stay down for the test
        t1 = PeerTransport(1, peers, lambda m: None, backoff_min_s=60.0, backoff_max_s=60.0)
        await t1.start()
        try:
            await asyncio.sleep(0.3)  # the first attempts (2 and 3 are not up) were refused
            assert t1.connected() == [] and t1.links[2].connects == 0
            t2 = PeerTransport(2, peers, lambda m: None, backoff_max_s=0.05)
            await t2.start()  # 2 dials 1 as it starts
            try:
                await _until(lambda: t1.connected() == [2], limit_s=10.0)
            finally:
                await t2.close()
            assert 3 not in t1.connected()  # woken too, but 3 is still down
        finally:
            await t1.close()

    asyncio.run(main())


def test_a_malformed_frame_closes_only_that_link_and_the_sender_reconnects(caplog) -> None:
    received: dict[int, list] = {1: [], 2: []}

    async def main() -> None:
        t1, t2 = _pair(received)
        async with _running(t1, t2):
            await _until(lambda: t1.connected() == [2])
            junk = b"\x09\x01\x00\x00\x00\x01\x00\x00\x00\x02"  # version 9: not spoken here
            t1.links[2].writer.write(struct.pack(">I", len(junk)) + junk)
            await _until(lambda: t2.bad_frames == 1)
            await _until(lambda: t1.connected() == [2] and t1.links[2].connects >= 2)
            assert t1.send(Touch(1, 2, (5,)))
            await _until(lambda: received[2] == [Touch(1, 2, (5,))])

    with caplog.at_level(logging.WARNING, logger="squall.node.peer"):
        asyncio.run(main())
    assert any("malformed frame" in r.getMessage() and "version 9" in r.getMessage() for r in caplog.records)


def test_an_oversized_frame_is_refused() -> None:
    received: dict[int, list] = {1: [], 2: []}

    async def main() -> None:
        t1, t2 = _pair(received)
        t2.max_frame_bytes = 1024
        async with _running(t1, t2):
            await _until(lambda: t1.connected() == [2])
            t1.links[2].writer.write(struct.pack(">I", 1 << 20))
            await _until(lambda: t2.bad_frames == 1)
            assert received[2] == []

    asyncio.run(main())


# Inbound framing, driven directly: the protocol gets exactly the reads a test
# chooses, so "several frames in one read" and "one byte per read" are exact.


class _FakeTransport(asyncio.Transport):
    """What _Inbound needs of a socket transport; close() reports the loss like asyncio does."""

    def __init__(self, proto: asyncio.Protocol) -> None:
        super().__init__()
        self.proto = proto
        self.closed = False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.proto.connection_lost, None)


def _frame(m) -> bytes:
    payload = encode_peer(m)
    return struct.pack(">I", len(payload)) + payload


def _receiver(**kw) -> PeerTransport:
    peers = {i: PeerAddress(i, "127.0.0.1", 0, 1) for i in (1, 2, 3)}
    kw.setdefault("on_message", None)
    return PeerTransport(2, peers, kw.pop("on_message"), **kw)


def _connect(t: PeerTransport) -> tuple[_Inbound, _FakeTransport]:
    proto = _Inbound(t)
    tr = _FakeTransport(proto)
    proto.connection_made(tr)
    return proto, tr


_MSGS = (
    RaftMsg(Message(MessageType.HEARTBEAT, 1, 2, term=4, commit=7)),
    Forward(1, 2, 0x77, 5, b"txn-bytes"),
    Touch(1, 2, (1, 2, 3)),
)


def test_peer_inbound_hands_all_frames_of_one_read_to_on_batch_in_order() -> None:
    async def main() -> None:
        batches: list[list] = []
        t = _receiver(on_batch=batches.append)
        proto, tr = _connect(t)
        proto.data_received(b"".join(_frame(m) for m in _MSGS))
        assert batches == [list(_MSGS)]
        # A read ending inside a frame delivers what is whole and keeps the rest.
        more = _frame(_MSGS[0]) + _frame(_MSGS[2])
        proto.data_received(more[:-3])
        proto.data_received(more[-3:])
        assert batches == [list(_MSGS), [_MSGS[0]], [_MSGS[2]]]
        assert t.received == 5 and t.bad_frames == 0 and not tr.closed
        assert proto._timer is None  # nothing unfinished: no frame timer left running

    asyncio.run(main())


def test_peer_inbound_decodes_frames_fed_one_byte_at_a_time() -> None:
    async def main() -> None:
        got: list = []
        t = _receiver(on_message=got.append)
        proto, tr = _connect(t)
        data = b"".join(_frame(m) for m in _MSGS)
        for i in range(len(data)):
            proto.data_received(data[i : i + 1])
        assert got == list(_MSGS)
        assert t.received == 3 and t.bad_frames == 0 and not tr.closed
        assert proto._timer is None and not proto._buf

    asyncio.run(main())


def test_peer_inbound_delivers_the_good_frames_before_closing_on_an_oversized_length(caplog) -> None:
    async def main() -> None:
        batches: list[list] = []
        t = _receiver(on_batch=batches.append, max_frame_bytes=1024)
        proto, tr = _connect(t)
        proto.data_received(_frame(_MSGS[0]) + _frame(_MSGS[1]) + struct.pack(">I", 1025) + b"x" * 10)
        assert batches == [[_MSGS[0], _MSGS[1]]]
        assert tr.closed and t.bad_frames == 1 and t.received == 2
        proto.data_received(_frame(_MSGS[2]))  # nothing more is read from a closed link
        assert batches == [[_MSGS[0], _MSGS[1]]]
        await asyncio.sleep(0)
        assert proto.lost.done() and not t._inbound

    with caplog.at_level(logging.WARNING, logger="squall.node.peer"):
        asyncio.run(main())
    assert any("frame length 1025 is outside 1..1024" in r.getMessage() for r in caplog.records)


def test_peer_inbound_closes_on_a_zero_length_or_a_message_for_someone_else(caplog) -> None:
    async def main() -> None:
        got: list = []
        t = _receiver(on_message=got.append)
        proto, tr = _connect(t)
        proto.data_received(struct.pack(">I", 0))
        assert tr.closed and t.bad_frames == 1
        proto, tr = _connect(t)
        proto.data_received(_frame(_MSGS[0]) + _frame(Touch(1, 3, (4,))) + _frame(_MSGS[1]))
        assert got == [_MSGS[0]] and tr.closed and t.bad_frames == 2

    with caplog.at_level(logging.WARNING, logger="squall.node.peer"):
        asyncio.run(main())
    assert any("message addressed to 3, I am 2" in r.getMessage() for r in caplog.records)


def test_peer_inbound_handler_errors_are_logged_and_the_link_carries_on(caplog) -> None:
    async def main() -> None:
        batches: list[list] = []

        def on_batch(ms: list) -> None:
            batches.append(ms)
            if len(batches) == 1:
                raise RuntimeError("boom")

        t = _receiver(on_batch=on_batch)
        proto, tr = _connect(t)
        proto.data_received(_frame(_MSGS[0]))
        proto.data_received(_frame(_MSGS[1]))
        assert batches == [[_MSGS[0]], [_MSGS[1]]] and not tr.closed and t.bad_frames == 0

    with caplog.at_level(logging.ERROR, logger="squall.node.peer"):
        asyncio.run(main())
    assert any("handling 1 messages from peer 1 failed" in r.getMessage() for r in caplog.records)


def test_peer_inbound_frame_timer_is_armed_only_while_a_body_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(node.peer, "FRAME_BODY_TIMEOUT_S", 30.0)

    async def main() -> None:
        got: list = []
        t = _receiver(on_message=got.append)
        proto, tr = _connect(t)
        f = _frame(_MSGS[1])
        proto.data_received(f[:3])  # not even the length yet: no timer (as before)
        assert proto._timer is None
        proto.data_received(f[3:6])
        first = proto._timer
        assert first is not None
        proto.data_received(f[6:8])  # the same frame: the same timer, not a new one
        assert proto._timer is first
        proto.data_received(f[8:] + f[:5])  # done; the next frame starts a fresh timer
        assert first.cancelled() and proto._timer is not None and proto._timer is not first
        proto.data_received(f[5:])
        assert proto._timer is None and got == [_MSGS[1], _MSGS[1]]

    asyncio.run(main())


def test_peer_frame_that_never_finishes_closes_the_link_after_the_timeout(monkeypatch, caplog) -> None:
    monkeypatch.setattr(node.peer, "FRAME_BODY_TIMEOUT_S", 0.05)
    received: dict[int, list] = {1: [], 2: []}

    async def main() -> None:
        t1, t2 = _pair(received)
        async with _running(t1, t2):
            await _until(lambda: t1.connected() == [2])
            frame = _frame(Touch(1, 2, (5,)))
            t1.links[2].writer.write(frame[:-2])  # the last two bytes never come
            await _until(lambda: t2.bad_frames == 1, 5.0)
            await _until(lambda: t1.connected() == [2] and t1.links[2].connects >= 2)
            assert t1.send(Touch(1, 2, (6,)))
            await _until(lambda: received[2] == [Touch(1, 2, (6,))])
        assert not t2._inbound

    with caplog.at_level(logging.WARNING, logger="squall.node.peer"):
        asyncio.run(main())
    assert any("frame did not arrive in time" in r.getMessage() for r in caplog.records)


def test_peer_send_many_writes_each_peers_frames_at_once_and_drops_like_send() -> None:
    received: dict[int, list] = {1: [], 2: []}
    raw3 = bytearray()

    async def main() -> None:
        t1, t2 = _pair(received)

        async def peer3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(65536):
                raw3.extend(chunk)
            writer.close()

        listener = await asyncio.start_server(peer3, "127.0.0.1", t1.peers[3].peer_port)
        async with _running(t1, t2):
            await _until(lambda: t1.connected() == [2, 3])
            writes: dict[int, int] = {2: 0, 3: 0}
            for pid in (2, 3):
                w = t1.links[pid].writer
                real = w.write

                def counting(data, pid=pid, real=real):
                    writes[pid] += 1
                    real(data)

                w.write = counting
            to2 = [RaftMsg(Message(MessageType.HEARTBEAT, 1, 2, term=1, commit=i)) for i in range(50)]
            to3 = [Touch(1, 3, (i,)) for i in range(20)]
            interleaved = [m for pair in zip(to2, to3, strict=False) for m in pair]  # to2's first 20, to3's 20
            mixed = interleaved + to2[20:] + [Touch(1, 9, (1,))]  # 9: unknown
            assert t1.send_many(iter(mixed)) == 70
            assert writes == {2: 1, 3: 1}
            assert (t1.links[2].sent, t1.links[3].sent) == (50, 20)
            await _until(lambda: len(received[2]) == 50 and len(raw3) == sum(len(_frame(m)) for m in to3))
            assert received[2] == to2
            assert bytes(raw3) == b"".join(_frame(m) for m in to3)
            assert t1.send_many([]) == 0

            # Congestion: a message is dropped once what is queued ahead of it passes the limit.
            await _until(lambda: t1.links[2].writer.transport.get_write_buffer_size() == 0)
            t1.max_buffer_bytes = 0
            assert t1.send_many([to2[0], to2[1], to3[0], to2[2]]) == 2
            assert (t1.links[2].sent, t1.links[2].dropped) == (51, 2)
            assert (t1.links[3].sent, t1.links[3].dropped) == (21, 0)
            listener.close()
            await listener.wait_closed()
        # A link that is down drops everything sent to it, counted per message.
        assert t1.send_many(to2[:3]) == 0 and t1.links[2].dropped == 5

    asyncio.run(main())


def test_peer_on_batch_over_loopback_gets_everything_in_order() -> None:
    batches: list[list] = []

    async def main() -> None:
        peers = {i: PeerAddress(i, "127.0.0.1", 0, free_port()) for i in (1, 2, 3)}
        t1 = PeerTransport(1, peers, lambda m: None, backoff_max_s=0.05)
        t2 = PeerTransport(2, peers, None, on_batch=batches.append, backoff_max_s=0.05)
        async with _running(t1, t2):
            await _until(lambda: t1.connected() == [2])
            msgs = [Touch(1, 2, (i,)) for i in range(500)]
            assert t1.send_many(msgs[:250]) == 250
            assert all(t1.send(m) for m in msgs[250:])
            await _until(lambda: t2.received == 500)
            assert [m for b in batches for m in b] == msgs
            assert all(b for b in batches)  # never an empty batch

    asyncio.run(main())


def test_config_file_takes_snapcount_and_the_autopurge_keys(tmp_path: Path) -> None:
    f = tmp_path / "zoo.cfg"
    f.write_text(f"dataDir={tmp_path}\nsnapCount=500\nautopurge.snapRetainCount=5\nautopurge.purgeInterval=2\n")
    cfg, ignored = load_config(f, {})
    assert (cfg.snapshot_every, cfg.snap_retain_count, cfg.purge_interval_h) == (500, 5, 2) and ignored == []
    f.write_text(f"dataDir={tmp_path}\nautopurge.snapRetainCount=2\n")
    with pytest.raises(ConfigError, match="snapRetainCount 2 is below ZooKeeper's minimum; allowed: 3 or more"):
        load_config(f, {})
