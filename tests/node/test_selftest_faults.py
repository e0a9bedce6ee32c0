"""The selftest catalogue's own test-only bugs (node/faults.py, issue 16): each
does what it says when armed, and nothing when not.

Driven through the synchronous replica cluster of test_replica.py (or a bare
Raft core): deterministic, no processes. Whether a campaign catches each bug
is `squall selftest`'s business (docs/track-record.md); the two the shell
carries out (late-watch-events, setwatches-ignored) are exercised there.
"""

from __future__ import annotations

import random

import pytest

from node import faults
from node.consensus import Entry, HardState, Message, MessageType, PersistentState, RaftNode
from node.errors import Err
from node.replica import Replica, ReplicaDisk, Sync, Write
from node.tree import EPHEMERAL, OPEN_ACL_UNSAFE, CreateOp, MultiOp, SetDataOp
from tests.node.test_replica import Cluster

ARMED = pytest.mark.parametrize("armed", [False, True], ids=["unarmed", "armed"])
MT = MessageType


def _cluster(fault: str, armed: bool, **opts) -> Cluster:
    return Cluster(unsafe_fault=fault if armed else "", **opts)


def _write(c: Cluster, i: int, conn: int, sid: int, seq: int, op) -> None:
    c.call(i, "client_request", conn, sid, seq, Write(op), c.now)
    c.deliver_all()
    c.tick(2)


def _isolate(c: Cluster, i: int) -> None:
    c.cut = {(a, b) for a in c.ids for b in c.ids if a != b and i in (a, b)}


def test_every_new_fault_is_registered_and_described() -> None:
    for name in (
        "commit-without-quorum",
        "vote-ignores-log",
        "heartbeat-commit-beyond-match",
        "read-index-no-quorum",
        "recovery-truncates-last-entry",
        "late-watch-events",
        "setwatches-ignored",
        "multi-version-off-by-one",
        "disconnect-drops-ephemerals",
    ):
        assert faults.check(name) == name and len(faults.FAULTS[name]) > 30


@ARMED
def test_commit_without_quorum_acknowledges_a_write_no_follower_has(armed: bool) -> None:
    c = _cluster("commit-without-quorum", armed)
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    _isolate(c, lead)
    c.call(lead, "client_request", 1, sid, 2, Write(CreateOp("/alone", b"", OPEN_ACL_UNSAFE)), c.now)
    c.deliver_all()
    acked = [r for r in c.replies[1] if r.seq == 2]
    assert bool(acked) == armed and all(r.err == Err.OK for r in acked)
    assert all(c.r(i).tree.exists("/alone") is None for i in c.ids if i != lead)


def _follower_with_log(fault: str) -> RaftNode:
    entries = tuple(Entry(2, i, (2 << 32) | i) for i in range(1, 6))
    disk = PersistentState(HardState(2, None, 3), entries=entries)
    return RaftNode(1, [1, 2, 3], disk, random.Random(1), unsafe_fault=fault)


@ARMED
def test_vote_ignores_log_grants_a_candidate_whose_log_is_behind(armed: bool) -> None:
    r = _follower_with_log("vote-ignores-log" if armed else "")
    r.step(Message(type=MT.VOTE, frm=2, to=1, term=3, index=1, log_term=1))  # the candidate lacks 2..5
    resp = [m for m in r.msgs if m.type is MT.VOTE_RESP]
    assert len(resp) == 1 and resp[0].reject is (not armed)
    assert (r.vote == 2) is armed


@ARMED
def test_heartbeat_commit_beyond_match_tells_a_follower_to_commit_what_it_may_not_hold(armed: bool) -> None:
    c = _cluster("heartbeat-commit-beyond-match", armed)
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    lag = next(i for i in c.ids if i != lead)
    _isolate(c, lag)
    for k in range(3):
        _write(c, lead, 1, sid, 2 + k, CreateOp(f"/h{k}", b"", OPEN_ACL_UNSAFE))
    c.sent.clear()
    c.tick(1)
    beats = [
        m.msg for m in c.sent if getattr(m, "msg", None) is not None and m.msg.type is MT.HEARTBEAT and m.msg.to == lag
    ]
    assert beats and all(
        b.commit == (c.r(lead).raft.log.committed if armed else c.r(lead).raft.progress[lag].match) for b in beats
    )


@ARMED
def test_read_index_no_quorum_answers_sync_from_a_leader_cut_off_from_everyone(armed: bool) -> None:
    c = _cluster("read-index-no-quorum", armed)
    lead = c.elect()
    sid, _ = c.new_session(lead, conn=1)
    _isolate(c, lead)
    c.tick(40)  # far beyond an election timeout
    assert c.r(lead).is_leader is armed  # no check-quorum: it never steps down
    c.call(lead, "client_request", 1, sid, 2, Sync("/"), c.now)
    c.deliver_all()
    c.tick(2)
    synced = [r for r in c.replies[1] if r.seq == 2]
    assert bool(synced) == armed


@ARMED
def test_recovery_truncates_last_entry_forgets_an_acknowledged_entry_on_restart(armed: bool) -> None:
    entries = tuple(Entry(2, i, (2 << 32) | i) for i in range(1, 6))
    disk = PersistentState(HardState(2, 1, 5), entries=entries)
    r = Replica(1, [1, 2, 3], disk, random.Random(1), unsafe_fault="recovery-truncates-last-entry" if armed else "")
    assert r.raft.log.last_index() == (4 if armed else 5)
    assert ReplicaDisk().state().entries == ()  # (the reference disk itself is untouched by a replica)


@ARMED
def test_multi_version_off_by_one_lets_a_stale_version_commit(armed: bool) -> None:
    c = _cluster("multi-version-off-by-one", armed)
    f = c.follower()
    sid, _ = c.new_session(f, conn=1)
    _write(c, f, 1, sid, 2, CreateOp("/v", b"0", OPEN_ACL_UNSAFE))
    _write(c, f, 1, sid, 3, SetDataOp("/v", b"1", 0))  # now at version 1
    _write(c, f, 1, sid, 4, MultiOp((SetDataOp("/v", b"stale", 0),)))  # read at version 0
    assert c.last_reply(1).err == (Err.OK if armed else Err.BAD_VERSION)
    _write(c, f, 1, sid, 5, MultiOp((SetDataOp("/v", b"older", 0),)))  # two behind: refused either way
    assert c.last_reply(1).err == Err.BAD_VERSION
    assert len({c.r(i).tree.digest() for i in c.ids}) == 1


@ARMED
def test_disconnect_drops_ephemerals_of_a_session_that_lives_on(armed: bool) -> None:
    c = _cluster("disconnect-drops-ephemerals", armed)
    lead = c.elect()
    a, b = [i for i in c.ids if i != lead]
    sid, pw = c.new_session(a, conn=1)
    _write(c, a, 1, sid, 2, CreateOp("/eph", b"", OPEN_ACL_UNSAFE, flags=EPHEMERAL))
    c.call(b, "client_connect", 2, sid, pw, c.last_reply(1).zxid, c.now)  # the client moves to b
    assert c.last_reply(2).err == Err.OK
    c.call(a, "client_disconnect", 1)  # ...and its old connection to a closes
    c.deliver_all()
    c.tick(3)
    for i in c.ids:
        assert sid in c.r(i).tree.sessions
        assert (c.r(i).tree.exists("/eph") is None) is armed
