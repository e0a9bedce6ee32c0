"""The pure ensemble replica (node/replica.py), driven by a tiny synchronous network.

The network delivers messages in send order unless a test drops or holds
them; time only moves when a test ticks. Everything is deterministic.
"""

from __future__ import annotations

import random

import pytest

from node.consensus import Message, MessageType
from node.errors import Err
from node.replica import (
    ClientReply,
    CreateSession,
    Effects,
    Forward,
    PeerDecodeError,
    RaftMsg,
    Read,
    Replica,
    ReplicaDisk,
    Sync,
    Touch,
    Write,
    decode_peer,
    encode_peer,
)
from node.tree import EPHEMERAL, OPEN_ACL_UNSAFE, CreateOp, SetDataOp

TICK_MS = 100


class Cluster:
    def __init__(self, n: int = 3, seed: int = 1, **opts) -> None:
        self.ids = list(range(1, n + 1))
        self.rng = random.Random(seed)
        self.opts = dict(tick_ms=TICK_MS, election_ticks=10, heartbeat_ticks=1, **opts)
        self.disks = {i: ReplicaDisk() for i in self.ids}
        self.reps: dict[int, Replica | None] = {}
        self.now = 0
        self.inflight: list = []
        self.cut: set[tuple[int, int]] = set()
        self.replies: dict[int, list[ClientReply]] = {}  # conn id -> replies in arrival order
        self.sent: list = []
        for i in self.ids:
            self.start(i)

    def start(self, i: int) -> None:
        self.reps[i] = Replica(i, self.ids, self.disks[i].state(), random.Random(self.rng.getrandbits(64)), **self.opts)

    def crash(self, i: int) -> None:
        self.reps[i] = None

    def r(self, i: int) -> Replica:
        rep = self.reps[i]
        assert rep is not None
        return rep

    def handle(self, i: int, fx: Effects) -> Effects:
        for p in fx.persist:
            self.disks[i].apply(p)
        self.inflight.extend(fx.early + fx.messages)  # early ones may leave first (before the fsync)
        self.sent.extend(fx.early + fx.messages)
        for rep in fx.replies:
            self.replies.setdefault(rep.conn_id, []).append(rep)
        return fx

    def call(self, i: int, name: str, *args) -> Effects:
        return self.handle(i, getattr(self.r(i), name)(*args))

    def deliver_all(self, max_rounds: int = 1000, drop=None) -> None:
        for _ in range(max_rounds):
            if not self.inflight:
                return
            batch, self.inflight = self.inflight, []
            for m in batch:
                if (m.frm, m.to) in self.cut or self.reps.get(m.to) is None:
                    continue
                if drop is not None and drop(m):
                    continue
                self.call(m.to, "peer_message", m, self.now)
        raise AssertionError("network did not quiesce")

    def tick(self, n: int = 1, only=None) -> None:
        for _ in range(n):
            self.now += TICK_MS
            for i in self.ids:
                if self.reps[i] is not None and (only is None or i in only):
                    self.call(i, "tick", self.now)
            self.deliver_all()

    def leader(self) -> int | None:
        ls = [i for i in self.ids if self.reps[i] is not None and self.r(i).is_leader]
        return max(ls, key=lambda i: self.r(i).raft.term) if ls else None

    def elect(self) -> int:
        for _ in range(300):
            lead = self.leader()
            if lead is not None and all(
                self.r(i).raft.leader == lead
                for i in self.ids
                if self.reps[i] is not None and (lead, i) not in self.cut
            ):
                return lead
            self.tick()
        raise AssertionError("no leader")

    def follower(self, not_: tuple[int, ...] = ()) -> int:
        lead = self.elect()
        return next(i for i in self.ids if i != lead and i not in not_)

    def last_reply(self, conn: int) -> ClientReply:
        assert self.replies.get(conn), f"no reply on connection {conn}"
        return self.replies[conn][-1]

    def new_session(self, i: int, conn: int, timeout_ms: int = 2000) -> tuple[int, bytes]:
        self.call(i, "client_request", conn, 0, 1, CreateSession(timeout_ms), self.now)
        self.deliver_all()
        for _ in range(50):
            if self.replies.get(conn):
                break
            self.tick()
        rep = self.last_reply(conn)
        assert rep.err == Err.OK, rep
        sid, password, _t = rep.value
        return sid, password


def test_write_on_a_follower_is_forwarded_and_answered_after_local_apply():
    c = Cluster()
    f = c.follower()
    sid, _pw = c.new_session(f, conn=7)
    c.sent.clear()
    c.call(f, "client_request", 7, sid, 2, Write(CreateOp("/a", b"x", OPEN_ACL_UNSAFE)), c.now)
    # The follower sent the write to the leader and did not answer yet.
    assert [m for m in c.sent if isinstance(m, Forward)], "the follower did not forward the write"
    assert len(c.replies[7]) == 1  # only the session's reply so far
    # Let the leader commit but hold back the follower's copy of the commit:
    # the answer must wait for the follower's own apply.
    lead = c.leader()
    c.deliver_all(
        drop=lambda m: (
            isinstance(m, RaftMsg)
            and m.to == f
            and m.msg.type is MessageType.APPEND
            and m.msg.commit >= c.r(lead).raft.log.last_index()
            and not m.msg.entries
        )
    )
    if len(c.replies[7]) == 2:
        # If it answered, it must already have applied the write.
        assert c.r(f).tree.exists("/a") is not None
    c.tick(3)
    rep = c.replies[7][1]
    assert rep.err == Err.OK and rep.seq == 2
    assert rep.value[0] == "/a"
    assert c.r(f).tree.exists("/a") is not None
    # read-your-writes on the same replica, with a zxid at least the write's
    c.call(f, "client_read", 7, sid, 3, Read("get_data", "/a"), c.now)
    rd = c.last_reply(7)
    assert rd.err == Err.OK and rd.value[0] == b"x" and rd.zxid >= rep.zxid


def test_a_read_waits_behind_the_same_connections_pending_write():
    c = Cluster()
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    c.call(f, "client_request", 1, sid, 2, Write(CreateOp("/b", b"1", OPEN_ACL_UNSAFE)), c.now)
    c.call(f, "client_read", 1, sid, 3, Read("get_data", "/b"), c.now)
    assert [r.seq for r in c.replies[1]] == [1]  # neither answered yet: FIFO per connection
    c.deliver_all()
    c.tick(2)
    assert [r.seq for r in c.replies[1]] == [1, 2, 3]
    assert c.replies[1][2].err == Err.OK and c.replies[1][2].value[0] == b"1"


def test_a_duplicated_forward_is_applied_once():
    c = Cluster()
    f = c.follower()
    lead = c.leader()
    sid, _ = c.new_session(f, conn=1)
    c.call(f, "client_request", 1, sid, 2, Write(CreateOp("/d", b"", OPEN_ACL_UNSAFE)), c.now)
    c.deliver_all()
    c.tick(2)
    c.call(f, "client_request", 1, sid, 3, Write(SetDataOp("/d", b"v", -1)), c.now)
    fwd = [m for m in c.inflight if isinstance(m, Forward)]
    assert len(fwd) == 1
    c.inflight.append(fwd[0])  # the network duplicates it (or the follower resubmitted)
    c.deliver_all()
    c.tick(3)
    for i in c.ids:
        _data, stat = c.r(i).tree.get_data("/d")
        assert stat.version == 1, f"replica {i} applied the setData {stat.version} times"
    assert c.r(lead).tree.digest() == c.r(f).tree.digest()


def test_a_lost_forward_is_resubmitted():
    c = Cluster()
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    c.call(f, "client_request", 1, sid, 2, Write(CreateOp("/lost", b"", OPEN_ACL_UNSAFE)), c.now)
    c.inflight = [m for m in c.inflight if not isinstance(m, Forward)]  # lost
    c.deliver_all()
    assert len(c.replies[1]) == 1
    c.tick(15)  # > retry_ticks
    assert c.replies[1][-1].seq == 2 and c.replies[1][-1].err == Err.OK
    assert all(c.r(i).tree.exists("/lost") is not None for i in c.ids)


def test_sessions_expire_on_the_leader_and_ephemerals_go_through_the_log():
    c = Cluster()
    f = c.follower()
    sid, _ = c.new_session(f, conn=1, timeout_ms=1000)
    c.call(f, "client_request", 1, sid, 2, Write(CreateOp("/e", b"", OPEN_ACL_UNSAFE, flags=EPHEMERAL)), c.now)
    c.deliver_all()
    c.tick(2)
    assert all(c.r(i).tree.exists("/e") is not None for i in c.ids)
    # Pings through the follower keep the session alive well past its timeout.
    for _ in range(30):
        c.call(f, "client_ping", 1, c.now)
        c.tick()
    assert sid in c.r(c.leader()).tree.sessions
    # Silence: the leader expires it by proposing CloseSession; every replica
    # removes the ephemeral at the same zxid.
    c.tick(25)
    for i in c.ids:
        assert sid not in c.r(i).tree.sessions
        assert c.r(i).tree.exists("/e") is None
    assert len({c.r(i).tree.digest() for i in c.ids}) == 1
    c.call(f, "client_read", 1, sid, 3, Read("exists", "/e"), c.now)
    assert c.last_reply(1).err == Err.SESSION_EXPIRED


def test_touches_are_batched_to_the_leader():
    c = Cluster()
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    c.sent.clear()
    for _ in range(3):
        c.call(f, "client_ping", 1, c.now)
    c.tick(1)
    touches = [m for m in c.sent if isinstance(m, Touch)]
    assert len(touches) == 1 and touches[0].sessions == (sid,) and touches[0].to == c.leader()


def test_reconnect_elsewhere_keeps_the_session_and_a_replica_behind_refuses():
    c = Cluster()
    lead = c.elect()
    a, b = [i for i in c.ids if i != lead]
    sid, pw = c.new_session(a, conn=1)
    c.call(a, "client_request", 1, sid, 2, Write(CreateOp("/eph", b"", OPEN_ACL_UNSAFE, flags=EPHEMERAL)), c.now)
    c.deliver_all()
    c.tick(2)
    # b falls behind: cut it off, then write more through a.
    c.cut = {(lead, b), (b, lead), (a, b), (b, a)}
    c.call(a, "client_request", 1, sid, 3, Write(CreateOp("/later", b"", OPEN_ACL_UNSAFE)), c.now)
    c.deliver_all()
    c.tick(2)
    seen = c.last_reply(1)
    assert seen.seq == 3 and seen.err == Err.OK
    assert c.r(b).last_zxid < seen.zxid
    c.call(b, "client_connect", 2, sid, pw, seen.zxid, c.now)
    refused = c.last_reply(2)
    assert refused.err == Err.CONNECTION_LOSS and "behind" in refused.value
    # Requests on a connection b never accepted are refused too.
    c.call(b, "client_read", 2, sid, 4, Read("get_data", "/later"), c.now)
    assert c.last_reply(2).err == Err.CONNECTION_LOSS
    # Another up-to-date replica accepts the session; the ephemeral is still there.
    c.call(lead, "client_connect", 3, sid, pw, seen.zxid, c.now)
    assert c.last_reply(3).err == Err.OK
    c.call(lead, "client_read", 3, sid, 5, Read("exists", "/eph"), c.now)
    assert c.last_reply(3).value is not None
    # A wrong password is refused.
    c.call(lead, "client_connect", 4, sid, b"\0" * 16, seen.zxid, c.now)
    assert c.last_reply(4).err == Err.SESSION_EXPIRED
    # Once b catches up it accepts the client.
    c.cut = set()
    c.tick(5)
    c.call(b, "client_connect", 5, sid, pw, seen.zxid, c.now)
    assert c.last_reply(5).err == Err.OK


def test_sync_waits_until_the_follower_applied_the_leaders_commit_point():
    c = Cluster()
    lead = c.elect()
    a, b = [i for i in c.ids if i != lead]
    sid, _ = c.new_session(lead, conn=1)
    sid_b, pw_b = c.new_session(b, conn=2)
    # b misses a write (its appends are dropped), a does not: it commits.
    c.call(lead, "client_request", 1, sid, 2, Write(CreateOp("/s", b"", OPEN_ACL_UNSAFE)), c.now)
    c.deliver_all(drop=lambda m: m.to == b)
    assert c.r(b).tree.exists("/s") is None
    c.call(b, "client_request", 2, sid_b, 2, Sync("/"), c.now)
    c.call(b, "client_read", 2, sid_b, 3, Read("exists", "/s"), c.now)
    assert [r.seq for r in c.replies[2]] == [1]
    c.deliver_all()
    c.tick(3)
    sync, read = c.replies[2][1], c.replies[2][2]
    assert sync.seq == 2 and sync.err == Err.OK
    assert read.seq == 3 and read.value is not None, "a read after sync missed a write committed before it"


def test_restart_recovers_from_snapshot_and_log():
    c = Cluster(compact_every=3)
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    for k in range(10):
        c.call(lead, "client_request", 1, sid, 2 + k, Write(CreateOp(f"/n{k}", b"%d" % k, OPEN_ACL_UNSAFE)), c.now)
        c.deliver_all()
    c.tick(3)
    f = next(i for i in c.ids if i != lead)
    assert c.disks[f].snapshot.meta.index > 0, "no snapshot was taken"
    before = c.r(f).tree.digest()
    c.crash(f)
    c.start(f)
    c.tick(3)
    assert c.r(f).tree.digest() == before
    assert c.r(f).last_zxid == c.r(lead).last_zxid


def test_a_lagging_follower_catches_up_from_a_snapshot():
    c = Cluster(compact_every=2)
    lead = c.elect()
    lag = next(i for i in c.ids if i != lead)
    c.crash(lag)
    sid, _ = c.new_session(lead, conn=1)
    for k in range(8):
        c.call(lead, "client_request", 1, sid, 2 + k, Write(CreateOp(f"/m{k}", b"", OPEN_ACL_UNSAFE)), c.now)
        c.deliver_all()
        c.tick()
    assert c.r(lead).raft.log.offset > 0
    c.start(lag)
    c.sent.clear()
    c.tick(20)
    assert any(isinstance(m, RaftMsg) and m.msg.type is MessageType.SNAPSHOT for m in c.sent)
    assert c.r(lag).tree.digest() == c.r(lead).tree.digest()


def test_requests_are_refused_on_an_unknown_connection():
    c = Cluster()
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    c.call(lead, "client_request", 99, sid, 2, Write(CreateOp("/x", b"", OPEN_ACL_UNSAFE)), c.now)
    assert c.last_reply(99).err == Err.CONNECTION_LOSS
    c.call(lead, "client_request", 1, sid, 3, "bogus", c.now)
    assert c.last_reply(1).err == Err.BAD_ARGUMENTS and "allowed" in c.last_reply(1).value


def test_status_reports_role_epoch_and_last_zxid():
    c = Cluster()
    lead = c.elect()
    st = c.r(lead).status()
    assert st["role"] == "leader" and st["epoch"] >= 1 and st["last_zxid"] >> 32 == st["epoch"]
    f = next(i for i in c.ids if i != lead)
    assert c.r(f).status()["role"] == "follower" and c.r(f).status()["leader"] == lead


@pytest.mark.parametrize(
    "m",
    [
        Forward(1, 2, 0x0100000000000001, 7, b"\x01\x02"),
        Touch(3, 1, (5, 6, 1 << 60)),
        Touch(3, 1, ()),
        RaftMsg(Message(type=MessageType.HEARTBEAT, frm=1, to=2, term=3, commit=9, context=b"ctx")),
    ],
)
def test_peer_messages_round_trip(m):
    assert decode_peer(encode_peer(m)) == m


@pytest.mark.parametrize(
    "buf, problem",
    [
        (b"", "shorter"),
        (b"\x09\x02\x00\x00\x00\x01\x00\x00\x00\x02", "version 9"),
        (b"\x01\x07\x00\x00\x00\x01\x00\x00\x00\x02", "unknown peer message kind 7"),
        (encode_peer(Forward(1, 2, 1, 1, b"abc"))[:-1], "forward says 3"),
        (encode_peer(Touch(1, 2, (1, 2)))[:-3], "touch says 2"),
        (encode_peer(RaftMsg(Message(type=MessageType.HEARTBEAT, frm=1, to=2)))[:-1], "bad raft message"),
    ],
)
def test_bad_peer_frames_are_refused_with_a_reason(buf, problem):
    with pytest.raises(PeerDecodeError, match=problem):
        decode_peer(buf)


def test_a_late_duplicate_create_session_does_not_revive_a_closed_session():
    from node.replica import CloseSession

    c = Cluster()
    f = c.follower()
    lead = c.leader()
    c.sent.clear()
    sid, _ = c.new_session(f, conn=1)
    create = [m for m in c.sent if isinstance(m, Forward)]
    assert len(create) == 1
    c.call(f, "client_request", 1, sid, 2, CloseSession(), c.now)
    c.deliver_all()
    c.tick(2)
    assert sid not in c.r(lead).tree.sessions
    c.inflight.append(create[0])  # the network delivers the old forward again
    c.deliver_all()
    c.tick(3)
    for i in c.ids:
        assert sid not in c.r(i).tree.sessions, f"replica {i} revived closed session {sid:#x}"
    # ... and that memory survives a snapshot and a restart.
    r = c.r(f)
    blob = r._snapshot_bytes()
    from node.consensus import Snapshot, SnapshotMeta

    fresh = Replica(9, [9], None, random.Random(0))
    fresh._install(Snapshot(SnapshotMeta(1, 1, r.last_zxid), blob))
    assert sid in fresh._closed and fresh.tree.digest() == r.tree.digest()


def test_forwards_from_non_members_or_misaddressed_are_ignored():
    c = Cluster()
    lead = c.elect()
    before = c.r(lead).raft.log.last_index()
    from node.tree import Txn, encode_txn

    txn = encode_txn(Txn(0, 0, 0, (), CreateOp("/evil", b"", OPEN_ACL_UNSAFE)))
    c.call(lead, "peer_message", Forward(42, lead, 0, 5, txn), c.now)  # not a member
    c.call(lead, "peer_message", Forward(lead % 3 + 1, 99, 0, 6, txn), c.now)  # not for us
    assert c.r(lead).raft.log.last_index() == before
    c.call(lead, "peer_message", Forward(lead % 3 + 1, lead, 0, 7, txn), c.now)  # a member: proposed
    assert c.r(lead).raft.log.last_index() == before + 1


def test_a_write_learned_only_through_a_snapshot_is_answered_outcome_unknown():
    from node.replica import OUTCOME_UNKNOWN

    c = Cluster(compact_every=2)
    lead = c.elect()
    f = next(i for i in c.ids if i != lead)
    sid, _ = c.new_session(f, conn=1)
    lead_sid, _ = c.new_session(lead, conn=2)
    c.cut = {(lead, f)}  # f's forward reaches the leader; nothing comes back
    c.call(f, "client_request", 1, sid, 2, Write(CreateOp("/w", b"", OPEN_ACL_UNSAFE)), c.now)
    c.deliver_all()
    for k in range(6):  # enough for the leader to compact past f's position
        c.call(lead, "client_request", 2, lead_sid, 2 + k, Write(CreateOp(f"/p{k}", b"", OPEN_ACL_UNSAFE)), c.now)
        c.deliver_all()
    assert c.r(lead).tree.exists("/w") is not None and c.r(lead).raft.log.offset > c.r(f).raft.log.last_index()
    c.sent.clear()
    c.cut = set()
    c.tick(5)
    assert any(isinstance(m, RaftMsg) and m.msg.type is MessageType.SNAPSHOT and m.to == f for m in c.sent)
    rep = [r for r in c.replies[1] if r.seq == 2]
    assert len(rep) == 1 and rep[0].err == OUTCOME_UNKNOWN, rep
    assert c.r(f).tree.exists("/w") is not None


def test_a_write_forwarded_to_a_dead_leader_is_resubmitted_once_a_new_leader_is_known():
    # retry_ticks is huge, so only the leader change can bring the write back.
    c = Cluster(retry_ticks=100_000)
    f = c.follower()
    old = c.leader()
    sid, _ = c.new_session(f, conn=1)
    c.call(f, "client_request", 1, sid, 2, Write(CreateOp("/fo", b"", OPEN_ACL_UNSAFE)), c.now)
    assert [m.to for m in c.inflight if isinstance(m, Forward)] == [old]
    c.crash(old)  # the forward dies with it
    c.sent.clear()
    for _ in range(100):
        if [r for r in c.replies[1] if r.seq == 2]:
            break
        c.tick()
    new = c.leader()
    assert new is not None and new != old
    assert any(isinstance(m, Forward) and m.to == new and m.seq == 2 for m in c.sent) or new == f
    rep = [r for r in c.replies[1] if r.seq == 2]
    assert len(rep) == 1 and rep[0].err == Err.OK, rep
    live = [i for i in c.ids if i != old]
    assert all(c.r(i).tree.exists("/fo") is not None for i in live)


def test_pending_writes_are_resent_only_when_the_leader_changes():
    c = Cluster(retry_ticks=100_000)
    f = c.follower()
    lead = c.leader()
    sid, _ = c.new_session(f, conn=1)
    c.call(f, "client_request", 1, sid, 2, Write(CreateOp("/q", b"", OPEN_ACL_UNSAFE)), c.now)
    c.inflight = [m for m in c.inflight if not isinstance(m, Forward)]  # lost on the way
    c.sent.clear()
    c.tick(20)  # same leader, same term: nothing is resent (retry_ticks governs that)
    assert not [m for m in c.sent if isinstance(m, Forward)]
    assert [r.seq for r in c.replies[1]] == [1]
    # A new term (here: the same cluster re-electing after the leader is cut
    # off) makes the follower resend at once.
    c.cut = {(lead, i) for i in c.ids} | {(i, lead) for i in c.ids}
    for _ in range(100):
        if c.r(f).raft.leader not in (None, lead):
            break
        c.tick()
    new = c.r(f).raft.leader
    assert new not in (None, lead)
    c.tick(3)
    rep = [r for r in c.replies[1] if r.seq == 2]
    assert len(rep) == 1 and rep[0].err == Err.OK, rep


def test_the_leader_deletes_expired_containers_and_ttl_nodes_through_the_log():
    from node.tree import CONTAINER, PERSISTENT_WITH_TTL, DeleteOp

    c = Cluster(container_check_ms=500)  # every 5 ticks
    lead = c.elect()
    f = next(i for i in c.ids if i != lead)
    sid, _ = c.new_session(f, conn=1)
    seq = iter(range(2, 100))

    def write(op):
        c.call(f, "client_request", 1, sid, next(seq), Write(op), c.now)
        c.deliver_all()
        c.tick(1)
        rep = c.last_reply(1)
        assert rep.err == Err.OK, rep

    write(CreateOp("/used", b"", OPEN_ACL_UNSAFE, flags=CONTAINER))
    write(CreateOp("/used/x", b"", OPEN_ACL_UNSAFE))
    write(CreateOp("/unused", b"", OPEN_ACL_UNSAFE, flags=CONTAINER))
    write(CreateOp("/ttl", b"", OPEN_ACL_UNSAFE, flags=PERSISTENT_WITH_TTL, ttl=3000))
    c.tick(6)
    # A container with a child, a never-used one and a fresh TTL node all stay.
    assert all(c.r(i).tree.exists(p) is not None for i in c.ids for p in ("/used", "/unused", "/ttl"))
    write(DeleteOp("/used/x"))
    c.tick(6)
    for i in c.ids:
        assert c.r(i).tree.exists("/used") is None, f"replica {i} kept the emptied container"
        assert c.r(i).tree.exists("/unused") is not None
        assert c.r(i).tree.exists("/ttl") is not None
    c.tick(35)  # past the TTL (leader time stamps both mtime and the check)
    for i in c.ids:
        assert c.r(i).tree.exists("/ttl") is None, f"replica {i} kept the expired TTL node"
    assert len({c.r(i).tree.digest() for i in c.ids}) == 1
    # Nothing left to reap: idle checks propose nothing.
    before = c.r(lead).raft.log.last_index()
    c.tick(20)
    assert c.r(lead).raft.log.last_index() == before


def test_only_the_leader_reaps_containers():
    from node.tree import CONTAINER, DeleteOp

    c = Cluster(container_check_ms=100)
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    for k, op in enumerate(
        [
            CreateOp("/c", b"", OPEN_ACL_UNSAFE, flags=CONTAINER),
            CreateOp("/c/x", b"", OPEN_ACL_UNSAFE),
            DeleteOp("/c/x"),
        ]
    ):
        c.call(lead, "client_request", 1, sid, 2 + k, Write(op), c.now)
        c.deliver_all()
    # Cut the leader off before its next check: followers must not act on
    # their own (they propose nothing: not leaders), and the leader cannot commit.
    c.cut = {(lead, i) for i in c.ids} | {(i, lead) for i in c.ids}
    c.tick(3)
    assert all(c.r(i).tree.exists("/c") is not None for i in c.ids)
    # Healed, some leader reaps it.
    c.cut = set()
    c.elect()
    c.tick(5)
    assert all(c.r(i).tree.exists("/c") is None for i in c.ids)


def test_a_sync_sent_to_a_dead_leader_is_asked_again_of_the_new_one():
    c = Cluster(retry_ticks=100_000)
    f = c.follower()
    old = c.leader()
    sid, _ = c.new_session(f, conn=1)
    c.call(f, "client_request", 1, sid, 2, Sync("/"), c.now)
    c.crash(old)  # the ReadIndex request dies with it
    for _ in range(100):
        if [r for r in c.replies[1] if r.seq == 2]:
            break
        c.tick()
    rep = [r for r in c.replies[1] if r.seq == 2]
    assert len(rep) == 1 and rep[0].err == Err.OK, rep
    assert c.leader() not in (None, old)
