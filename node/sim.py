"""Deterministic simulator: N real replicas in one process over a simulated world.

Everything is driven by one event queue on a simulated millisecond clock and
one `random.Random(seed)`: message delay, loss, duplication and reordering,
partitions, crashes and restarts, client think times. The same seed therefore
replays the identical run and history (`SimResult.history_hash()`).

What is real: `node.replica.Replica` (the Raft core, the data tree, sessions,
forwarding, sync) and the effect loop that carries out its effects
(`node.runner.EffectRunner`), exactly as the server runs them: deferred
replicas drained once per turn, every input of a turn in one batch, the
core's early messages sent before the fsync, the batch's promises and replies
only after it, no new batch while a sync is in flight. What is simulated:

- the **network** between replicas: each message is delivered after a random
  delay (sometimes a long one, which reorders), or lost, or delivered twice;
  a partition drops messages between sides at delivery time;
- the **disks**: a persist is buffered and an fsync takes a random
  `fsync_min_ms..fsync_max_ms` of simulated time, during which the member
  goes on taking inputs (they share the next batch); only a finished fsync
  moves what was persisted into the replica's durable `ReplicaDisk`. A crash
  drops the replica object (everything in memory, unsent messages, pending
  client requests) and keeps a random prefix of what was persisted but not
  synced (the OS may have written some of it); a restart builds a new replica
  from the disk alone;
- **lost links**: a crash makes every live replica's shell report its link to
  the dead one lost (`peer_unreachable`, as the real shell does when the
  kernel closes the connections), and half the partitions do the same for
  every cut link although the peer lives (a proxy or firewall that resets
  connections): the hint must never cost safety, and a false one must not
  stop the cluster from making progress;
- **clients**: each is connected to one replica at a time and issues register
  operations on a few keys: `write` (setData), `cas` (getData, then setData
  conditioned on the version read), `read` (a local getData) and sometimes
  sync + read. An operation unanswered within `op_timeout_ms`, or answered
  `OUTCOME_UNKNOWN`, completes as `info` (indeterminate); the client then reconnects, possibly to another
  replica, with its session and lastZxidSeen, and continues as a new process
  (as Jepsen does after an indeterminate op). Client links are not
  partitioned but a crashed replica answers nothing.

Every client session also creates an ephemeral znode (outside the history);
at the end no replica may hold an ephemeral of a session it has closed.

**Membership changes** (`reconfig`, on by default) are in the nemesis's
schedule too: an admin session (a superuser) sends reconfig requests, as a
client would (to a random replica, so they are forwarded), that add a spare
server as a voter or an observer, promote an observer, or remove a member --
the leader included. A spare is started as a joiner (no configuration of its
own) before it is added; a replica that applies a configuration without
itself stops, as the real shell does, and is wiped before it is added again.
The pool is `nodes` founding members plus `spares`.

A run is a **safety phase** (faults, until the clients have issued `ops`
operations) and then a **liveness phase** (heal every partition, restart every
replica, no loss: some client write invoked after healing must be
acknowledged within `liveness_ms`, else it is a liveness failure). At the end
the replicas that applied the same prefix of the log must hold identical
trees (`divergence` otherwise), and a replica that raised is a violation.

The history is recorded as plain dicts with the fields of
`checkers.history.Op` (node/ may not import checkers); the `squall sim`
command converts and checks them. `unsafe_commit_without_quorum=True` is a
TEST-ONLY switch that passes the Raft core's bug injection through, to show
the whole pipeline catches a real safety bug.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node.consensus import MessageType
from node.errors import Err
from node.faults import SIM_FAULTS
from node.membership import OBSERVER, PARTICIPANT, Member, Membership
from node.replica import (
    OUTCOME_UNKNOWN,
    ClientReply,
    CreateSession,
    PeerMsg,
    Persist,
    RaftMsg,
    Read,
    Reconfig,
    Replica,
    ReplicaDisk,
    Sync,
    Write,
)
from node.runner import EffectRunner
from node.tree import EPHEMERAL, OPEN_ACL_UNSAFE, CreateOp, SetDataOp


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 3
    ops: int = 30  # client operations issued in the safety phase
    clients: int = 3
    keys: int = 2
    tick_ms: int = 100
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    compact_every: int = 16  # small, so that snapshots and catch-up by snapshot happen
    loss: float = 0.03
    dup: float = 0.02
    min_delay_ms: int = 1
    max_delay_ms: int = 15
    slow_prob: float = 0.08  # a message takes a long path (reordering)
    slow_max_ms: int = 250
    client_delay_ms: int = 2
    fsync_min_ms: int = 1  # simulated fsync latency, drawn per sync
    fsync_max_ms: int = 8
    think_max_ms: int = 500
    op_timeout_ms: int = 2500
    session_timeout_ms: int = 4000
    nemesis_min_ms: int = 150
    nemesis_max_ms: int = 900
    liveness_ms: int = 15000
    safety_max_ms: int = 120_000  # the safety phase ends here even if ops were not all issued
    reconfig: bool = True  # membership changes in the nemesis's schedule
    spares: int = 2  # servers beyond the founding members that reconfig may add
    reconfig_prob: float = 0.2  # of a nemesis step being a membership change
    unsafe_commit_without_quorum: bool = False
    unsafe_fault: str = ""  # TEST ONLY: a fault of node.faults.SIM_FAULTS armed in every replica

    def __post_init__(self) -> None:
        if self.nodes not in (1, 3, 5):
            raise ValueError(f"nodes must be 1, 3 or 5, got {self.nodes}")
        if not 0 <= self.fsync_min_ms <= self.fsync_max_ms:
            raise ValueError(f"fsync latency {self.fsync_min_ms}..{self.fsync_max_ms} ms: need 0 <= min <= max")
        if self.ops < 1 or self.clients < 1 or self.keys < 1:
            raise ValueError("ops, clients and keys must be >= 1")


@dataclass
class SimResult:
    seed: int
    config: SimConfig
    history: list[dict]
    violations: list[str]  # the simulator's own findings (divergence, a replica raised)
    liveness_ok: bool
    liveness_detail: str
    stats: dict[str, Any] = field(default_factory=dict)

    def history_hash(self) -> str:
        blob = json.dumps(self.history, sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()


class _Stop(Exception):
    pass


_IDLE, _WAIT_SESSION, _WAIT_CONNECT, _WAIT_OP = "idle", "session", "connect", "op"
_SETUP, _ADMIN = -1, -2  # connection owners that are not clients
_SUPER = (("super", ""),)


def sim_member(i: int, role: str = PARTICIPANT) -> Member:
    """Server i of a simulated ensemble, with made-up addresses (the simulator routes by id)."""
    return Member(i, f"n{i}", 2888, 3888, role, f"n{i}", 2181)


@dataclass
class _Client:
    cid: int
    process: int
    replica: int
    conn_id: int = 0
    conn_replica: int = 0  # where conn_id lives (c.replica may already name the next one)
    session_id: int = 0
    password: bytes = b""
    seq: int = 0
    last_zxid: int = 0
    state: str = _IDLE
    token: int = 0  # identifies the current wait; stale timeouts/replies carry an old one
    wait_seq: int = -1
    op: dict | None = None  # the invoked op awaiting completion
    step: str = ""  # "write", "read", "cas-read", "cas-write", "sync", "synced-read"
    cas_old: Any = None
    cas_new: Any = None


class Simulation:
    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.cfg = cfg = config or SimConfig()
        self.rng = random.Random(seed)
        self.founders = list(range(1, cfg.nodes + 1))
        # every server that may ever run: the founders, then the spares reconfig may add
        self.ids = list(range(1, cfg.nodes + 1 + (cfg.spares if cfg.reconfig else 0)))
        self.membership = Membership(tuple(sim_member(i) for i in self.founders)) if cfg.reconfig else None
        self.active = set(self.founders)  # servers that should be running (not removed, not never-added spares)
        self.joiners: set[int] = set()  # started without a configuration (spares, and wiped re-added members)
        self.removed: set[int] = set()
        self.admin: tuple[int, bytes] | None = None  # the superuser session that sends reconfig requests
        self.admin_seq = 0
        self.now = 0
        self._queue: list[tuple[int, int, Callable[..., None], tuple]] = []
        self._n = 0
        self.disks = {i: ReplicaDisk() for i in self.ids}
        self.replicas: dict[int, Replica | None] = {i: None for i in self.ids}
        self.runners: dict[int, EffectRunner | None] = {i: None for i in self.ids}
        self.unsynced: dict[int, list[Persist]] = {i: [] for i in self.ids}  # persisted, not yet synced
        self.incarnation = {i: 0 for i in self.ids}
        self.cut: set[tuple[int, int]] = set()
        self.faulty = True  # loss/dup/partitions/crashes allowed (safety phase)
        self.history: list[dict] = []
        self.violations: list[str] = []
        self.next_conn = 1
        self.conn_owner: dict[int, int] = {}  # conn id -> client id
        self.next_process = cfg.clients
        self.clients = [_Client(c, c, self.founders[c % len(self.founders)]) for c in range(cfg.clients)]
        self.issued = 0
        self.heal_time: int | None = None
        self.live_write_ok_at: int | None = None
        self.stats = {
            "messages": 0,
            "delivered": 0,
            "crashes": 0,
            "partitions": 0,
            "timeouts": 0,
            "snapshots_sent": 0,
            "connects_ok": 0,
            "connects_refused": 0,
            "sessions_expired": 0,
            "reconfigs_sent": 0,
            "reconfigs_ok": 0,
            "reconfigs_refused": 0,
            "members_removed": 0,
            "fsyncs": 0,
            "unsynced_lost": 0,
        }
        self.value_counter = 0
        for i in self.founders:
            self._start(i)

    # -- event queue ------------------------------------------------------------------------

    def _at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self._n += 1
        heapq.heappush(self._queue, (t, self._n, fn, args))

    def _run_until(self, t_end: int, done: Callable[[], bool] | None = None) -> None:
        q = self._queue
        while q and q[0][0] <= t_end:
            t, _n, fn, args = heapq.heappop(q)
            self.now = t
            fn(*args)
            if done is not None and done():
                return
        self.now = max(self.now, t_end)

    # -- replicas ---------------------------------------------------------------------------

    def _start(self, i: int) -> None:
        cfg = self.cfg
        self.incarnation[i] += 1
        inc = self.incarnation[i]
        replica = self.replicas[i] = Replica(
            i,
            self.founders,
            self.disks[i].state(),
            random.Random(self.rng.getrandbits(64)),
            tick_ms=cfg.tick_ms,
            election_ticks=cfg.election_ticks,
            heartbeat_ticks=cfg.heartbeat_ticks,
            compact_every=cfg.compact_every,
            unsafe_commit_without_quorum=cfg.unsafe_commit_without_quorum,
            unsafe_fault=cfg.unsafe_fault,
            deferred=True,
            membership=self.membership,
            join=i in self.joiners,
            reconfig_enabled=cfg.reconfig,
        )
        self.unsynced[i] = []
        self.runners[i] = EffectRunner(
            replica,
            _SimDisk(self, i, inc),
            schedule=lambda fn: self._at(self.now, self._turn, i, inc, fn),
            send=self._send_all,
            events=lambda events: None,
            replies=self._replies,
        )
        self._at(self.now + self.rng.randrange(1, cfg.tick_ms + 1), self._tick, i, inc)

    def _turn(self, i: int, inc: int, fn: Callable[[], None]) -> None:
        """A runner's turn (the event loop's call_soon); a raise from the replica is a violation."""
        if self.incarnation[i] != inc:
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - any raise from a pure core is a bug to report
            self.violations.append(f"replica {i} raised in its effect loop at t={self.now}ms: {type(e).__name__}: {e}")
            raise _Stop() from e
        r = self.replicas[i]
        if r is not None and r.removed:
            # It applied a configuration without itself: the shell stops serving (exits).
            self.stats["members_removed"] += 1
            self.active.discard(i)
            self.removed.add(i)
            self._crash(i)
            self.stats["crashes"] -= 1

    def _crash(self, i: int) -> None:
        self.replicas[i] = None
        self.runners[i] = None
        self.incarnation[i] += 1
        self.stats["crashes"] += 1
        # What was written but never synced: the OS may have put any prefix of it on disk.
        pending = self.unsynced[i]
        kept = self.rng.randrange(len(pending) + 1) if pending else 0
        for p in pending[:kept]:
            self.disks[i].apply(p)
        self.stats["unsynced_lost"] += len(pending) - kept
        self.unsynced[i] = []
        # The dead process's kernel closes its connections: every live member's
        # shell sees its link to i drop and passes the hint on, as the real one does.
        for j in self.ids:
            if j != i and self.replicas[j] is not None:
                self._hint_later(j, i)

    def _hint_later(self, j: int, peer: int) -> None:
        delay = self.rng.randrange(self.cfg.min_delay_ms, self.cfg.max_delay_ms + 1)
        self._at(self.now + delay, self._hint, j, peer, self.incarnation[j])

    def _hint(self, j: int, peer: int, inc: int) -> None:
        if self.incarnation[j] == inc:
            self._call(j, "peer_unreachable", peer, self.now)

    def _call(self, i: int, fn_name: str, *args: Any) -> None:
        """Give a replica an input; its runner carries out the effects this turn. A raise is a violation."""
        r, runner = self.replicas[i], self.runners[i]
        if r is None or runner is None:
            return
        try:
            fx = getattr(r, fn_name)(*args)
        except Exception as e:  # noqa: BLE001 - any raise from a pure core is a bug to report
            self.violations.append(f"replica {i} raised in {fn_name} at t={self.now}ms: {type(e).__name__}: {e}")
            raise _Stop() from e
        runner.input(fx)

    def _send_all(self, msgs: list[PeerMsg]) -> None:
        for m in msgs:
            self._send(m)

    def _replies(self, replies: list[ClientReply]) -> None:
        for rep in replies:
            cid = self.conn_owner.get(rep.conn_id)
            if cid == _ADMIN:
                self._admin_reply(rep)
            elif cid is not None:
                self._at(self.now + self.cfg.client_delay_ms, self._client_reply, cid, rep)

    def _tick(self, i: int, inc: int) -> None:
        if self.incarnation[i] != inc:
            return
        self._call(i, "tick", self.now)
        self._at(self.now + self.cfg.tick_ms, self._tick, i, inc)

    # -- network ----------------------------------------------------------------------------

    def _send(self, m: PeerMsg) -> None:
        cfg, rng = self.cfg, self.rng
        self.stats["messages"] += 1
        if isinstance(m, RaftMsg) and m.msg.type is MessageType.SNAPSHOT:
            self.stats["snapshots_sent"] += 1
        copies = 1
        if self.faulty:
            r = rng.random()
            if r < cfg.loss:
                return
            if r < cfg.loss + cfg.dup:
                copies = 2
        for _ in range(copies):
            if self.faulty and rng.random() < cfg.slow_prob:
                delay = rng.randrange(cfg.max_delay_ms, cfg.slow_max_ms + 1)
            else:
                delay = rng.randrange(cfg.min_delay_ms, cfg.max_delay_ms + 1)
            self._at(self.now + delay, self._deliver, m)

    def _deliver(self, m: PeerMsg) -> None:
        if (m.frm, m.to) in self.cut or self.replicas.get(m.to) is None:
            return
        self.stats["delivered"] += 1
        self._call(m.to, "peer_message", m, self.now)

    # -- nemesis ----------------------------------------------------------------------------

    def _nemesis(self) -> None:
        if not self.faulty:
            return
        rng = self.rng
        if self.cfg.reconfig and rng.random() < self.cfg.reconfig_prob:
            # Sometimes a burst: changes racing each other through different replicas.
            for _ in range(1 if rng.random() < 0.7 else rng.randrange(2, 4)):
                self._reconfig()
            self._at(self.now + rng.randrange(self.cfg.nemesis_min_ms, self.cfg.nemesis_max_ms + 1), self._nemesis)
            return
        r = rng.random()
        if r < 0.3:
            self.cut = set()
        elif r < 0.55:
            order = self.ids[:]
            rng.shuffle(order)
            k = rng.randrange(1, len(order)) if len(order) > 1 else 1
            self._partition(order[:k], order[k:])
        elif r < 0.7:
            lead = self._leader()
            if lead is not None:
                self._partition([lead], [i for i in self.ids if i != lead])
        elif r < 0.85:
            live = [i for i in self.ids if self.replicas[i] is not None]
            if live:
                self._crash(rng.choice(live))
        else:
            dead = [i for i in sorted(self.active) if self.replicas[i] is None]
            if dead:
                self._start(rng.choice(dead))
        self._at(self.now + rng.randrange(self.cfg.nemesis_min_ms, self.cfg.nemesis_max_ms + 1), self._nemesis)

    def _partition(self, a: list[int], b: list[int]) -> None:
        self.stats["partitions"] += 1
        self.cut = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        if self.rng.random() < 0.5:
            # A cut made by closing connections (a proxy, a firewall's reset) is seen
            # by the shells as lost links: hints that the peer is gone although it lives.
            for x, y in sorted(self.cut):
                if self.replicas.get(x) is not None:
                    self._hint_later(x, y)

    # -- membership changes -----------------------------------------------------------------

    def _reconfig(self) -> None:
        """Send one membership change, as an operator would, to a random live replica."""
        rng = self.rng
        live = [i for i in self.ids if self.replicas[i] is not None]
        if self.admin is None or not live:
            return
        lead = self._leader()
        view = self.replicas[lead if lead is not None else rng.choice(live)]
        assert view is not None
        current = view.membership
        if current is None:
            return
        member_ids = {m.id for m in current.members}
        # not running as a member (never added, or removed), or a running joiner not in the membership
        spares = [i for i in self.ids if i not in member_ids and (i not in self.active or i in self.joiners)]
        observers = [m.id for m in current.members if m.role == OBSERVER]
        r = rng.random()
        joining = leaving = None
        if spares and r < 0.35:
            new = rng.choice(spares)
            role = PARTICIPANT if rng.random() < 0.7 else OBSERVER
            self._prepare_spare(new)
            joining = f"server.{new}={sim_member(new, role).spec()}"
        elif observers and r < 0.45:
            joining = f"server.{(o := rng.choice(observers))}={sim_member(o).spec()}"  # promote
        else:
            leaving = str(rng.choice(sorted(member_ids)))
        target = rng.choice(live)
        conn = self.next_conn
        self.next_conn += 1
        self.conn_owner[conn] = _ADMIN
        sid, password = self.admin
        self.admin_seq += 1
        self.stats["reconfigs_sent"] += 1
        inc = self.incarnation[target]

        def arrive() -> None:
            if self.incarnation[target] == inc:
                self._call(target, "client_connect", conn, sid, password, 0, self.now)
                self._call(
                    target,
                    "client_request",
                    conn,
                    sid,
                    self.admin_seq,
                    Reconfig(joining, leaving, None, -1, _SUPER),
                    self.now,
                )

        self._at(self.now + self.cfg.client_delay_ms, arrive)

    def _prepare_spare(self, i: int) -> None:
        """A spare about to be added runs as a joiner; a removed member is wiped first (as an operator would)."""
        if i in self.removed:
            self.disks[i] = ReplicaDisk()
            self.removed.discard(i)
        self.joiners.add(i)
        self.active.add(i)
        if self.replicas[i] is None:
            self._start(i)

    def _admin_reply(self, rep: ClientReply) -> None:
        if rep.seq == 0:
            return  # the connect
        self.stats["reconfigs_ok" if rep.err == Err.OK else "reconfigs_refused"] += 1
        self.conn_owner.pop(rep.conn_id, None)

    def _leader(self) -> int | None:
        best, best_term = None, 0
        for i in self.ids:
            r = self.replicas[i]
            if r is not None and r.is_leader and (best is None or r.raft.term > best_term):
                best, best_term = i, r.raft.term
        return best

    # -- clients ----------------------------------------------------------------------------

    def _record(self, c: _Client, type_: str, f: str, key: str | None, value: Any, **extra: Any) -> dict:
        d = {
            "index": len(self.history),
            "time": self.now * 1_000_000,
            "type": type_,
            "process": c.process,
            "f": f,
            "value": value,
            "client": c.cid,
        }
        if key is not None:
            d["key"] = key
        d.update({k: v for k, v in extra.items() if v is not None})
        self.history.append(d)
        return d

    def _to_replica(self, c: _Client, fn_name: str, *args: Any) -> None:
        """A client request travels a short, lossless link; a dead replica drops it."""
        target, inc = c.replica, self.incarnation[c.replica]

        def arrive() -> None:
            if self.incarnation[target] == inc:
                self._call(target, fn_name, *args)

        self._at(self.now + self.cfg.client_delay_ms, arrive)

    def _new_conn(self, c: _Client) -> None:
        if c.conn_id:
            old, rep = c.conn_id, c.conn_replica
            self.conn_owner.pop(old, None)
            inc = self.incarnation[rep]

            def disconnect() -> None:  # unless the replica restarted meanwhile
                if self.incarnation[rep] == inc:
                    self._call(rep, "client_disconnect", old)

            self._at(self.now + self.cfg.client_delay_ms, disconnect)
        c.conn_id = self.next_conn
        c.conn_replica = c.replica
        self.next_conn += 1
        self.conn_owner[c.conn_id] = c.cid

    def _wait(self, c: _Client, state: str, seq: int) -> None:
        c.state, c.wait_seq = state, seq
        c.token += 1
        self._at(self.now + self.cfg.op_timeout_ms, self._client_timeout, c.cid, c.token)

    def _client_next(self, cid: int) -> None:
        c = self.clients[cid]
        if c.state != _IDLE:
            return
        if not c.session_id:
            self._new_conn(c)
            c.seq += 1
            self._to_replica(
                c, "client_request", c.conn_id, 0, c.seq, CreateSession(self.cfg.session_timeout_ms), self.now
            )
            self._wait(c, _WAIT_SESSION, c.seq)
            return
        if self.heal_time is None and self.issued >= self.cfg.ops:
            return  # the safety phase's budget is spent; the liveness phase restarts us
        if self.heal_time is not None and self.live_write_ok_at is not None:
            return  # liveness shown: let the run drain
        self.issued += 1
        rng = self.rng
        key = f"k{rng.randrange(self.cfg.keys)}"
        r = rng.random()
        if r < 0.4:
            self.value_counter += 1
            v = self.value_counter
            c.op = self._record(c, "invoke", "write", key, v)
            c.step = "write"
            self._issue(c, "client_request", Write(SetDataOp("/" + key, str(v).encode(), -1)))
        elif r < 0.65:
            c.op = self._record(c, "invoke", "read", key, None)
            c.step = "cas-read"
            self._issue(c, "client_read", Read("get_data", "/" + key))
        elif r < 0.9:
            c.op = self._record(c, "invoke", "read", key, None)
            c.step = "read"
            self._issue(c, "client_read", Read("get_data", "/" + key))
        else:
            c.op = self._record(c, "invoke", "read", key, None, sync=True)
            c.step = "sync"
            self._issue(c, "client_request", Sync("/" + key))

    def _issue(self, c: _Client, fn_name: str, request: Any) -> None:
        c.seq += 1
        self._to_replica(c, fn_name, c.conn_id, c.session_id, c.seq, request, self.now)
        self._wait(c, _WAIT_OP, c.seq)

    def _idle(self, c: _Client) -> None:
        c.state = _IDLE
        c.token += 1
        self._at(self.now + self.rng.randrange(0, self.cfg.think_max_ms + 1), self._client_next, c.cid)

    def _client_reply(self, cid: int, rep: ClientReply) -> None:
        c = self.clients[cid]
        if rep.conn_id != c.conn_id or rep.seq != c.wait_seq:
            return  # an answer to a request we gave up on
        if rep.err == Err.OK:
            c.last_zxid = max(c.last_zxid, rep.zxid)
        if c.state == _WAIT_SESSION:
            if rep.err == Err.OK:
                c.session_id, c.password, _t = rep.value
                # Every session owns an ephemeral (not in the history): its
                # removal on expiry goes through the log and is checked at
                # the end. Fire and forget; the next op queues behind it.
                c.seq += 1
                self._to_replica(
                    c,
                    "client_request",
                    c.conn_id,
                    c.session_id,
                    c.seq,
                    Write(CreateOp(f"/e{c.cid}-{c.session_id:x}", b"", OPEN_ACL_UNSAFE, flags=EPHEMERAL)),
                    self.now,
                )
            self._idle(c)
        elif c.state == _WAIT_CONNECT:
            self.stats["connects_ok" if rep.err == Err.OK else "connects_refused"] += 1
            if rep.err == Err.SESSION_EXPIRED:
                c.session_id = 0
            elif rep.err != Err.OK:
                self._switch_replica(c)  # refused (behind): try another one
            self._idle(c)
        elif c.state == _WAIT_OP:
            self._op_reply(c, rep)

    def _op_reply(self, c: _Client, rep: ClientReply) -> None:
        op = c.op
        assert op is not None
        key: str = op["key"]  # every invocation the simulated clients record names its key
        if rep.err == Err.CONNECTION_LOSS:
            # The replica refused the request before submitting it (it does
            # not know this connection: it restarted): a definite failure.
            f = "cas" if c.step == "cas-write" else op["f"]
            self._record(c, "fail", f, key, op["value"], error="connection-loss")
            c.op = None
            self._reconnect(c)
            return
        if rep.err == OUTCOME_UNKNOWN:
            # The replica cannot tell whether the write happened: indeterminate.
            self._give_up(c, "outcome-unknown")
            self._reconnect(c)
            return
        if rep.err == Err.SESSION_EXPIRED:
            self.stats["sessions_expired"] += 1
            # A definite answer: the tree (or the replica) refused the op.
            self._record(c, "fail", op["f"], key, op["value"], error="session-expired")
            c.session_id = 0
            self._idle(c)
            return
        if c.step == "write":
            if rep.err == Err.OK:
                self._record(c, "ok", "write", key, op["value"], zxid=rep.zxid, node=f"n{c.replica}")
            else:
                self._record(c, "fail", "write", key, op["value"], error=f"err {rep.err}")
            self._idle(c)
        elif c.step in ("read", "cas-read", "synced-read"):
            if rep.err != Err.OK:
                self._record(c, "fail", "read", key, None, error=f"err {rep.err}")
                self._idle(c)
                return
            data, stat = rep.value
            value = None if not data else int(data)
            self._record(
                c,
                "ok",
                "read",
                key,
                value,
                zxid=rep.zxid,
                node=f"n{c.replica}",
                sync=True if c.step == "synced-read" else None,
            )
            if c.step in ("read", "synced-read"):
                self._idle(c)
                return
            self.value_counter += 1
            c.cas_old, c.cas_new = value, self.value_counter
            c.op = self._record(c, "invoke", "cas", key, [c.cas_old, c.cas_new])
            c.step = "cas-write"
            self._issue(c, "client_request", Write(SetDataOp("/" + key, str(c.cas_new).encode(), stat.version)))
        elif c.step == "cas-write":
            if rep.err == Err.OK:
                self._record(c, "ok", "cas", key, [c.cas_old, c.cas_new], zxid=rep.zxid, node=f"n{c.replica}")
            else:
                self._record(c, "fail", "cas", key, [c.cas_old, c.cas_new], error=f"err {rep.err}")
            self._idle(c)
        elif c.step == "sync":
            if rep.err != Err.OK:
                self._record(c, "fail", "read", key, None, error=f"sync err {rep.err}")
                self._idle(c)
                return
            c.step = "synced-read"
            c.seq += 1
            self._to_replica(c, "client_read", c.conn_id, c.session_id, c.seq, Read("get_data", "/" + key), self.now)
            c.wait_seq = c.seq  # same deadline: the sync+read is one op
        if self.heal_time is not None and self.live_write_ok_at is None and c.op is not None:
            last = self.history[-1]
            if last["type"] == "ok" and last["f"] in ("write", "cas") and c.op["time"] >= self.heal_time * 1_000_000:
                self.live_write_ok_at = self.now

    def _client_timeout(self, cid: int, token: int) -> None:
        c = self.clients[cid]
        if c.token != token:
            return
        self.stats["timeouts"] += 1
        if c.state == _WAIT_OP and c.op is not None:
            self._give_up(c, "timeout")
        self._reconnect(c)

    def _give_up(self, c: _Client, why: str) -> None:
        """Complete the open op as info (indeterminate)."""
        op = c.op
        assert op is not None
        f = "cas" if c.step == "cas-write" else op["f"]
        self._record(c, "info", f, op.get("key"), op["value"], error=why)
        # Jepsen's rule: after an indeterminate op the process is replaced,
        # since the old op may still take effect after later ones.
        c.process = self.next_process
        self.next_process += 1
        c.op = None

    def _reconnect(self, c: _Client) -> None:
        self._switch_replica(c)
        if c.session_id:
            self._new_conn(c)
            self._to_replica(c, "client_connect", c.conn_id, c.session_id, c.password, c.last_zxid, self.now)
            self._wait(c, _WAIT_CONNECT, 0)
        else:
            self._idle(c)

    def _switch_replica(self, c: _Client) -> None:
        others = [i for i in sorted(self.active) if i != c.replica]
        if others and self.rng.random() < 0.7:
            c.replica = self.rng.choice(others)

    # -- the run ----------------------------------------------------------------------------

    def _setup(self) -> None:
        """Before faults: elect a leader and create the register znodes (not in the history)."""
        deadline = self.now + 30_000
        self._run_until(deadline, lambda: self._leader() is not None)
        lead = self._leader()
        if lead is None:
            raise _Stop()
        conn = self.next_conn
        self.next_conn += 1
        self.conn_owner[conn] = _SETUP
        got: list[ClientReply] = []
        orig = self._client_reply

        def capture(cid: int, rep: ClientReply) -> None:
            if cid == _SETUP:
                got.append(rep)
            else:
                orig(cid, rep)

        self._client_reply = capture  # type: ignore[method-assign]
        try:
            self._call(lead, "client_request", conn, 0, 1, CreateSession(self.cfg.session_timeout_ms), self.now)
            self._run_until(self.now + 10_000, lambda: bool(got))
            if not got or got[0].err != Err.OK:
                raise _Stop()
            sid = got[0].value[0]
            for k in range(self.cfg.keys):
                self._call(
                    lead, "client_request", conn, sid, 2 + k, Write(CreateOp(f"/k{k}", b"", OPEN_ACL_UNSAFE)), self.now
                )
            self._run_until(self.now + 10_000, lambda: len(got) >= 1 + self.cfg.keys)
            # Every replica must hold the keys before clients read them.
            self._run_until(
                self.now + 10_000,
                lambda: all(
                    r is not None and r.tree.exists(f"/k{self.cfg.keys - 1}") is not None
                    for i, r in self.replicas.items()
                    if i in self.founders
                ),
            )
            if self.cfg.reconfig:
                # the operator's session for membership changes: it must outlive the run
                n = len(got)
                self._call(lead, "client_request", conn, sid, 100, CreateSession(1 << 30), self.now)
                self._run_until(self.now + 10_000, lambda: len(got) > n)
                if len(got) > n and got[n].err == Err.OK:
                    admin_sid, admin_pw, _t = got[n].value
                    self.admin = (admin_sid, admin_pw)
        finally:
            self._client_reply = orig  # type: ignore[method-assign]
        self.conn_owner.pop(conn, None)

    def run(self) -> SimResult:
        cfg = self.cfg
        detail = ""
        live_ok = False
        try:
            self._setup()
            t0 = self.now
            for c in self.clients:
                self._at(self.now + self.rng.randrange(0, 50), self._client_next, c.cid)
            self._at(self.now + self.rng.randrange(cfg.nemesis_min_ms, cfg.nemesis_max_ms + 1), self._nemesis)
            self._run_until(t0 + cfg.safety_max_ms, lambda: self.issued >= cfg.ops)
            # -- liveness phase: heal everything
            self.faulty = False
            self.cut = set()
            for i in sorted(self.active):
                if self.replicas[i] is None:
                    self._start(i)
            self.heal_time = self.now
            for c in self.clients:
                if c.state == _IDLE:
                    self._at(self.now + 1, self._client_next, c.cid)
            self._run_until(self.now + cfg.liveness_ms, lambda: self.live_write_ok_at is not None)
            if self.live_write_ok_at is not None:
                live_ok = True
                detail = (
                    "a write invoked after healing was acknowledged "
                    f"{self.live_write_ok_at - self.heal_time} ms after healing"
                )
            else:
                detail = f"no write invoked after healing was acknowledged within {cfg.liveness_ms} ms"
            # let outstanding operations finish or time out, and followers catch up
            self._run_until(self.now + cfg.op_timeout_ms + 2 * cfg.tick_ms * cfg.election_ticks)
            self._close_open_ops()
            self._check_convergence()
        except _Stop:
            if not self.violations:
                detail = "setup failed: no leader or no key creation within 30 s of a fault-free start"
            else:
                detail = "stopped at a violation"
            self._close_open_ops()
        self.stats["sim_ms"] = self.now
        self.stats["ops_issued"] = self.issued
        return SimResult(self.seed, cfg, self.history, self.violations, live_ok, detail, self.stats)

    def _close_open_ops(self) -> None:
        """An op still open at the end completes as info (it may or may not have happened)."""
        for c in self.clients:
            if c.state == _WAIT_OP and c.op is not None:
                f = "cas" if c.step == "cas-write" else c.op["f"]
                self._record(c, "info", f, c.op.get("key"), c.op["value"], error="run ended")
                c.op = None
                c.state = _IDLE
                c.token += 1

    def _check_convergence(self) -> None:
        by_applied: dict[int, tuple[int, tuple]] = {}
        for i in self.ids:
            r = self.replicas[i]
            if r is None:
                continue
            applied = r.raft.log.applied
            d = r.tree.digest()
            if applied in by_applied and by_applied[applied][1] != d:
                self.violations.append(
                    f"divergence: replicas {by_applied[applied][0]} and {i} applied the log up to index "
                    f"{applied} but hold different trees"
                )
            by_applied.setdefault(applied, (i, d))
            # An ephemeral outlives its session only if a CloseSession (expiry
            # or close) failed to remove it on this replica.
            for sid, paths in r.tree.ephemerals_by_session.items():
                if sid not in r.tree.sessions:
                    self.violations.append(f"replica {i} keeps ephemerals {paths} of closed session {sid:#x}")


class _SimDisk:
    """A replica's simulated disk for its runner: persists are buffered, a sync takes simulated time."""

    def __init__(self, sim: Simulation, i: int, inc: int) -> None:
        self.sim, self.i, self.inc = sim, i, inc

    def persist(self, p: Persist) -> None:
        self.sim.unsynced[self.i].append(p)

    def sync(self, done: Callable[[BaseException | None], None]) -> None:
        sim, cfg = self.sim, self.sim.cfg
        delay = sim.rng.randrange(cfg.fsync_min_ms, cfg.fsync_max_ms + 1)

        def synced() -> None:
            if sim.incarnation[self.i] != self.inc:
                return  # crashed meanwhile: _crash decided what reached the disk
            for p in sim.unsynced[self.i]:
                sim.disks[self.i].apply(p)
            sim.unsynced[self.i] = []
            sim.stats["fsyncs"] += 1
            sim._turn(self.i, self.inc, lambda: done(None))

        sim._at(sim.now + delay, synced)


def run_seed(seed: int, config: SimConfig | None = None) -> SimResult:
    """Run one seed; the same (seed, config) always gives the same result."""
    return Simulation(seed, config).run()


# ----------------------------------------------------------------------------
# Command line: `python -m node.sim` streams one JSON line per seed.
#
# This is how `squall sim` (harness/sim_cmd.py) drives the simulator: the
# harness may not import node/ (docs/architecture.md), so it runs this as a
# process and judges the histories with the checkers as they arrive.


def result_to_json(r: SimResult) -> dict[str, Any]:
    return {
        "seed": r.seed,
        "nodes": r.config.nodes,
        "ops": r.config.ops,
        "unsafe_commit_without_quorum": r.config.unsafe_commit_without_quorum,
        "unsafe_fault": r.config.unsafe_fault,
        "history_hash": r.history_hash(),
        "violations": r.violations,
        "liveness_ok": r.liveness_ok,
        "liveness_detail": r.liveness_detail,
        "stats": r.stats,
        "history": r.history,
    }


def nodes_for(n: int, nodes: int | None) -> int:
    """The cluster size of the n-th seed of a run: `nodes`, or 3 and 5 alternately."""
    return nodes if nodes else (3 if n % 2 == 0 else 5)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="python -m node.sim",
        description=("Run the deterministic ensemble simulator; print one JSON object per seed (history included)."),
    )
    ap.add_argument("--seeds", type=int, default=1, help="how many seeds (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    ap.add_argument(
        "--nodes", type=int, choices=(1, 3, 5), default=None, help="cluster size (default: 3 and 5 alternately)"
    )
    ap.add_argument("--ops", type=int, default=SimConfig.ops, help=f"client ops per seed (default {SimConfig.ops})")
    ap.add_argument(
        "--unsafe-commit-without-quorum",
        action="store_true",
        help="TEST ONLY: leaders commit without a quorum (a planted safety bug)",
    )
    ap.add_argument(
        "--unsafe-test-fault",
        default="",
        metavar="NAME",
        help="TEST ONLY: arm a deliberate bug of node/faults.py in every replica "
        "(one the replica carries out itself: " + ", ".join(SIM_FAULTS) + ")",
    )
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.ops < 1:
        ap.error("--seeds and --ops must be >= 1")
    if args.unsafe_test_fault and args.unsafe_test_fault not in SIM_FAULTS:
        ap.error(
            f"--unsafe-test-fault {args.unsafe_test_fault!r} is not one the simulator can arm; "
            f"allowed: {', '.join(SIM_FAULTS)}"
        )
    out = sys.stdout
    for n in range(args.seeds):
        cfg = SimConfig(
            nodes=nodes_for(n, args.nodes),
            ops=args.ops,
            unsafe_commit_without_quorum=args.unsafe_commit_without_quorum,
            unsafe_fault=args.unsafe_test_fault,
        )
        r = run_seed(args.seed + n, cfg)
        out.write(json.dumps(result_to_json(r), separators=(",", ":"), default=repr) + "\n")
        out.flush()
    return 0


__all__ = ["SimConfig", "SimResult", "Simulation", "main", "nodes_for", "result_to_json", "run_seed"]


def _die_with_parent() -> None:
    """As a process (``python -m node.sim``): end when the process that started it ends.

    The simulator only streams results to its parent; if the parent is killed (a sim worker
    stopped with SIGKILL after its grace period) nothing would read them, and an orphan would
    keep a core busy until its seeds ran out."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)


if __name__ == "__main__":
    _die_with_parent()
    raise SystemExit(main())
