"""The asyncio shell of an ensemble member: drives a pure `Replica` with real time, disk and sockets.

The replica (``node.replica``) decides everything; this shell only carries
out what it returns. Every input (a client request, a peer message, a timer
tick) yields an ``Effects``; effects are collected and carried out together
once per event-loop turn, which gives group commit for free:

1. every ``Persist`` goes to the raft store (``node.storage.raftlog``), then
   one fsync when any of them asked for it;
2. peer messages are sent (``node.peer``): a vote or an acknowledgement
   leaves only once what it promises is on disk;
3. watch events reach the watch manager and become notifications;
4. client replies are delivered.

Client connections reuse the standalone ``ClientConnection`` (framing,
four-letter words, the read/watch/auth handlers, the pure ``write_reply``
formatter) through a small seam: :class:`EnsembleConnection` keeps one
ordered queue of *slots* per connection. A write, a sync or a handshake is a
slot waiting for its ``ClientReply``; any other request is a slot holding a
function that is run when the slot reaches the head of the queue, so a read
is computed from the tree only after every earlier request of the same
connection was answered (a client reads its own writes), and a watch is
registered at that moment. Pings and auth packets are answered at once (the
client matches them by their special xids, not by order).

A reply is written only after the effects that produced it were persisted,
and a local read sees only applied (hence quorum-committed) state, so a
client never sees a write that a crash of this server could take back.

TEST-ONLY FAULTS (``node.faults``, armed by ``--unsafe-test-fault``): the
replica carries out most; this shell carries out ``drop-watch-events`` (in
``_dispatch_events``), ``skip-fsync`` and ``late-watch-events`` (in
``_process``) and ``setwatches-ignored`` (in ``EnsembleConnection._request``).
Inert unless armed.

TEST-ONLY FAILPOINTS (``node.failpoints``, armed by ``--failpoint NAME=ACTION``):
this shell passes ``before-fsync``, ``after-fsync``, ``peer-send`` and
``before-reply`` (in ``_process``); the replica and its Raft core the others.
An exception out of the replica (the ``apply`` failpoint's error, or a bug)
stops the member like a failed fsync: its state can no longer be trusted.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from node import faults
from node.failpoints import Failpoints
from node import tree as T
from node.admin import four_letter
from node.config import NodeConfig
from node.errors import Err
from node.peer import PeerAddress, PeerTransport, parse_peers
from node.consensus.messages import MessageType as MT
from node.replica import ClientReply, CloseSession, CreateSession, Effects, PeerMsg, RaftMsg, Replica, Sync, Write
from node.server import (serve_until_stopped, 
    CLOSED,
    CLOSING,
    CONNECTED,
    ZERO_PASSWORD,
    ClientConnection,
    LatencyStats,
    _HANDLERS,
    _acls,
    _write_op,
    multi_op,
    write_reply,
)
from node.storage import lock_dir
from node.storage.raftlog import RaftStore
from node.watches import WatchManager
from node.wire import protocol as P

log = logging.getLogger("squall.node.ensemble")

# Writes the replica orders (everything else is answered from the local tree).
_TREE_WRITES = frozenset({P.CREATE, P.CREATE2, P.CREATE_CONTAINER, P.CREATE_TTL, P.DELETE, P.SET_DATA, P.SET_ACL,
                          P.CHECK, P.MULTI})


def _wall_ms() -> int:
    # Wall time: the leader stamps it into transactions (ctime/mtime), as ZooKeeper does.
    return int(time.time() * 1000)


@dataclass(frozen=True)
class EnsembleSettings:
    """Timing of the consensus layer (separate from tickTime, which sizes session timeouts)."""

    raft_tick_ms: int = 25
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    # How long a submitted write may stay unapplied before the replica submits it again.
    # Well above an election (a lost forward waits this long) but long enough that a
    # merely busy leader is not flooded with duplicates of everything in flight.
    retry_ms: int = 500

    @property
    def retry_ticks(self) -> int:
        return max(self.election_ticks, -(-self.retry_ms // self.raft_tick_ms))


# Requests one connection may have in the replica at once; later ones wait in the
# connection (in order) until earlier ones are answered. This keeps the replica's queue
# short enough that nothing waits longer than the retry time merely because the leader is
# busy (which would make the replica resubmit, and flood the log with duplicates), and keeps
# a session's in-flight seqs far inside the replica's dedupe window (DEDUPE_WINDOW = 256).
MAX_INFLIGHT_WRITES = 64
# Requests parked in one connection beyond which we stop reading it (backpressure).
MAX_PARKED = 1024


# ---------------------------------------------------------------- what the shared handlers read


class EnsembleView:
    """The "node" a ClientConnection's read/watch handlers see: the replica's applied state."""

    fault = ""

    def __init__(self, server: "EnsembleServer") -> None:
        self._server = server
        self.watches = WatchManager()
        self.rng = random.Random(os.urandom(16))

    @property
    def tree(self) -> Any:  # never cache it: installing a snapshot replaces the replica's tree
        return self._server.replica.tree

    @property
    def read_tree(self) -> Any:  # a lagging copy under the stale-reads test fault
        return self._server.replica.read_tree

    @property
    def zxid(self) -> int:
        return self._server.replica.last_zxid

    committed_zxid = zxid


# ---------------------------------------------------------------- one client connection


class _Slot:
    """One request's place in a connection's reply order."""

    __slots__ = ("seq", "fmt", "run", "data", "close", "done", "t0")

    def __init__(self, seq: int = -1, fmt: Callable[[ClientReply], tuple[bytes | None, bool]] | None = None,
                 run: Callable[[], None] | None = None) -> None:
        self.seq = seq
        self.fmt = fmt  # waits for the replica's reply with this seq
        self.run = run  # computed locally when the slot reaches the head
        self.data: bytes | None = None
        self.close = False
        self.done = False
        self.t0 = time.monotonic()  # the request's arrival: mntr's latency runs from here to its reply


class EnsembleConnection(ClientConnection):
    """A client connection whose writes, syncs and sessions go through the replica."""

    def __init__(self, server: "EnsembleServer") -> None:
        super().__init__(server)  # type: ignore[arg-type]
        self.ens = server
        self.conn_id = server.next_conn_id()
        self._slots: collections.deque[_Slot] = collections.deque()
        # Replica dedupe keys must be unique within a session across connections
        # (clients restart their xid counter): prefix the xid with a random tag.
        self._seq_base = (random.getrandbits(30) + 1) << 32
        self._seq = 0
        self._close_after = False
        self._inflight = 0  # requests handed to the replica and not answered yet
        self._parked: collections.deque[Callable[[], None]] = collections.deque()  # waiting for room
        self._throttled = False
        self._write_paused = False
        self.notified = 0  # watch notifications dispatched to this connection

    # -- output: the slot queue replaces the standalone zxid gating

    def send(self, data: bytes | None, required: int = 0) -> None:
        if self.state == CLOSED:
            return
        if data is None:
            self.state = CLOSING
            self._close_after = True
            self.ens.dirty.add(self)
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self.sent += 1
        self.server.sent += 1
        self.ens.dirty.add(self)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.ens.has_pending_effects():
            # Some input applied entries whose watch events are not dispatched yet: a
            # read computed now could show data before its notification. Pump after them.
            self.ens.dirty.add(self)
            self.ens.kick()
        else:
            self.pump()

    def pump(self) -> None:
        """Answer every slot at the head that is ready, in order; then write."""
        slots = self._slots
        while slots and not self._close_after and self.state != CLOSED:
            s = slots[0]
            if s.run is not None and self._output_full():
                self._stall()  # a client that does not read: compute no more replies until it does
                break
            if s.run is not None:
                fn, s.run = s.run, None
                slots.popleft()
                fn()
                self.ens.latencies.add((time.monotonic() - s.t0) * 1000.0)
                continue
            if not s.done:
                break
            slots.popleft()
            self.ens.latencies.add((time.monotonic() - s.t0) * 1000.0)
            if s.data is not None:
                self.send(s.data)
            if s.close:
                self.send(None)
        self._write_out()
        if self._close_after and self.state != CLOSED:
            self.close()

    def pause_writing(self) -> None:
        self._write_paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._throttled:
            super().resume_writing()

    def _input_full(self) -> bool:
        return len(self._slots) >= MAX_PARKED or self._output_full()

    def _maybe_resume(self) -> None:
        # The pump stopped computing queued reads while the output was full: once it is not,
        # pump again (through the server's effect loop, which keeps events before replies),
        # whether or not reading resumes (the queue itself may still be at its bound).
        slots = self._slots
        if slots and slots[0].run is not None and not self._output_full() and self.state < CLOSED:
            self.ens.dirty.add(self)
            self.ens.kick()
        super()._maybe_resume()

    def _throttle(self) -> None:
        if not self._throttled and len(self._parked) >= MAX_PARKED and self.transport is not None:
            self._throttled = True
            self.transport.pause_reading()

    def _unthrottle(self) -> None:
        while self._parked and self._inflight < MAX_INFLIGHT_WRITES and self.state != CLOSED:
            self._inflight += 1
            self._parked.popleft()()
        if self._throttled and len(self._parked) <= MAX_PARKED // 2:
            self._throttled = False
            if self.transport is not None and self.state < CLOSED and not self._write_paused and not self._stalled:
                self.transport.resume_reading()

    def on_reply(self, rep: ClientReply) -> None:
        for s in self._slots:
            if s.fmt is not None and not s.done and s.seq == rep.seq:
                self._inflight -= 1
                self._unthrottle()
                try:
                    s.data, s.close = s.fmt(rep)
                except Exception:
                    log.exception("formatting the reply to %s (session 0x%x) failed; closing", self.address,
                                  self.session_id)
                    s.data, s.close = None, True
                s.done = True
                self.ens.dirty.add(self)
                return
        # No slot: a reply for a request whose connection state was reset; nothing waits for it.

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq_base | (self._seq & 0xFFFFFFFF)

    def _touch_session(self) -> None:
        self.ens.run(self.ens.replica.client_ping(self.conn_id, _wall_ms()))

    # -- handshake

    def _handshake(self, body: bytes) -> None:
        req = P.ConnectRequest.decode(body)
        ens = self.ens
        cfg = ens.cfg
        self.state = CONNECTED
        now = _wall_ms()
        if req.session_id == 0:
            timeout = min(max(req.timeout_ms, cfg.min_timeout_ms), cfg.max_timeout_ms)
            seq = self._next_seq()
            self._slots.append(_Slot(seq, fmt=self._created))
            self._inflight += 1
            ens.run(ens.replica.client_request(self.conn_id, 0, seq, CreateSession(timeout), now))
            return
        self._slots.append(_Slot(0, fmt=lambda rep: self._resumed(rep, req)))
        self._inflight += 1
        ens.run(ens.replica.client_connect(self.conn_id, req.session_id, req.password, req.last_zxid_seen, now))

    def _created(self, rep: ClientReply) -> tuple[bytes | None, bool]:
        if rep.err:
            log.info("session for %s not created: %s (err %d); closing", self.address, rep.value, rep.err)
            return None, True
        sid, password, timeout = rep.value
        self._attach(sid, timeout)
        return P.ConnectResponse(0, timeout, sid, password, False).encode_framed(), False

    def _resumed(self, rep: ClientReply, req: P.ConnectRequest) -> tuple[bytes | None, bool]:
        if rep.err == Err.OK:
            info = self.ens.replica.tree.sessions.get(req.session_id)
            timeout = info.timeout_ms if info is not None else req.timeout_ms
            self._attach(req.session_id, timeout)
            return P.ConnectResponse(0, timeout, req.session_id, req.password, False).encode_framed(), False
        if rep.err == Err.SESSION_EXPIRED:
            log.info("session 0x%x from %s: %s; answering expired", req.session_id, self.address, rep.value)
            return P.ConnectResponse(0, 0, 0, ZERO_PASSWORD, False).encode_framed(), True
        log.warning("refusing session 0x%x from %s: %s", req.session_id, self.address, rep.value)
        return None, True

    # -- requests

    def _request(self, body: bytes) -> None:
        try:
            req = P.decode_request(body)
        except P.MalformedRequest as exc:
            if exc.op == P.AUTH:
                raise  # ZooKeeper closes a connection whose auth packet does not decode
            log.info("answering MarshallingError to %s (session 0x%x): %s", self.address, self.session_id, exc)
            xid = exc.xid
            self._local(lambda: self.send(P.reply(xid, self.node.zxid, Err.MARSHALLING_ERROR)))
            return
        except P.UnknownOpcode as exc:
            log.warning("closing connection from %s (session 0x%x): %s; answered Unimplemented",
                        self.address, self.session_id, exc)
            xid = exc.xid
            self.state = CLOSING
            self._local(lambda: (self.send(P.reply(xid, self.node.zxid, Err.UNIMPLEMENTED)), self.send(None)))
            return
        op, xid, rec = req.op, req.xid, req.record
        self.server.request_stats[op][0] += 1  # counted by opcode; replies are asynchronous here, so not timed
        if op == P.PING:
            self._ping(xid, rec)
        elif op == P.AUTH:
            self._auth(xid, rec)  # identities must apply to the writes pipelined right behind it
        elif op in _TREE_WRITES:
            self._submit_write(op, xid, rec)
        elif op == P.SYNC:
            path = rec.path
            self._submit(Sync(path), lambda rep: self._plain(rep, xid) if rep.err else
                         (P.reply_path(xid, rep.zxid, path), False))
        elif op in (P.SET_WATCHES, P.SET_WATCHES2) and self.ens.fault == "setwatches-ignored":
            # TEST-ONLY FAULT: answered OK, nothing registered
            self._local(lambda: self.send(P.reply(xid, self.node.zxid, 0)))
        elif op == P.CLOSE_SESSION:
            self.state = CLOSING  # nothing after a close is read, as ZooKeeper
            self._submit(CloseSession(), lambda rep: self._closed_session(rep, xid))
        else:
            handler = _HANDLERS[op]
            self._local(lambda: handler(self, xid, rec))

    def _local(self, fn: Callable[[], Any]) -> None:
        self._slots.append(_Slot(run=fn))
        self.ens.dirty.add(self)

    def _submit(self, request: Any, fmt: Callable[[ClientReply], tuple[bytes | None, bool]]) -> None:
        seq = self._next_seq()
        self._slots.append(_Slot(seq, fmt=fmt))
        ens = self.ens
        sid = self.session_id

        def submit() -> None:
            ens.run(ens.replica.client_request(self.conn_id, sid, seq, request, _wall_ms()))

        if self._inflight < MAX_INFLIGHT_WRITES and not self._parked:
            self._inflight += 1
            submit()
        else:
            self._parked.append(submit)
            self._throttle()

    def _submit_write(self, opcode: int, xid: int, rec: Any) -> None:
        if opcode == P.MULTI:
            op = multi_op(rec)
            if op is None:
                self._local(lambda: self.send(P.reply(xid, self.node.zxid, Err.BAD_ARGUMENTS)))
                return
        elif opcode == P.SET_ACL:
            op = T.SetACLOp(rec.path, _acls(rec.acl), rec.version)
        else:
            op = _write_op(opcode, rec)

        def fmt(rep: ClientReply) -> tuple[bytes | None, bool]:
            if rep.err and (rep.value is None or isinstance(rep.value, str)):
                return self._plain(rep, xid)
            return write_reply(opcode, rec, xid, rep.zxid, rep.err, rep.value), False

        self._submit(Write(op, tuple(self.identities)), fmt)

    def _plain(self, rep: ClientReply, xid: int) -> tuple[bytes | None, bool]:
        """An error the replica answered instead of the tree; connection loss closes the connection."""
        if rep.err == Err.CONNECTION_LOSS:
            log.info("closing connection from %s (session 0x%x): %s", self.address, self.session_id, rep.value)
            return None, True
        return P.reply(xid, rep.zxid, rep.err), rep.err == Err.SESSION_EXPIRED

    def _closed_session(self, rep: ClientReply, xid: int) -> tuple[bytes | None, bool]:
        sid = self.session_id
        if sid and self.ens.session_conns.get(sid) is self:
            del self.ens.session_conns[sid]
            self.node.watches.remove_session(sid)
        self.session_id = 0
        return P.reply(xid, rep.zxid, 0 if rep.err == Err.SESSION_EXPIRED else rep.err), True


# ---------------------------------------------------------------- the server

# Raft messages that promise nothing about this member's disk: a leader's appends,
# heartbeats and snapshots, and read-index traffic. They may leave before the fsync of
# the same turn. Votes and acknowledgements are promises and leave only after it.
_EARLY_RAFT = frozenset({MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT, MT.READ_INDEX, MT.READ_INDEX_RESP})


def _promises_nothing(m: PeerMsg) -> bool:
    if isinstance(m, RaftMsg):
        return m.msg.type in _EARLY_RAFT
    return True  # Forward and Touch: requests to the leader, no promise of ours




class EnsembleServer:
    """Client port + peer port + timers + disk of one ensemble member."""

    def __init__(self, cfg: NodeConfig, peers: dict[int, PeerAddress], store: RaftStore,
                 settings: EnsembleSettings = EnsembleSettings()) -> None:
        self.cfg = cfg
        self.peers = peers
        self.store = store
        self.settings = settings
        disk = store.state()
        fresh = disk.hard_state.term == 0 and not disk.entries and disk.snapshot.meta.index == 0
        self.fp = Failpoints(cfg.failpoints, rng=random.Random(os.urandom(16)))
        self.replica = Replica(
            cfg.server_id, sorted(peers), None if fresh else disk, random.Random(os.urandom(16)),
            tick_ms=settings.raft_tick_ms, election_ticks=settings.election_ticks,
            heartbeat_ticks=settings.heartbeat_ticks, retry_ticks=settings.retry_ticks,
            compact_every=cfg.snapshot_every, deferred=True, unsafe_fault=cfg.unsafe_test_fault,
            failpoints=self.fp,
        )
        self.fault = self.replica.fault
        self.node = EnsembleView(self)
        self.transport = PeerTransport(cfg.server_id, peers, None, on_batch=self._peer_batch,
                                       on_link_lost=self._link_lost, listen_host=peers[cfg.server_id].host)
        self.connections: set[EnsembleConnection] = set()
        self.conns: dict[int, EnsembleConnection] = {}
        self.session_conns: dict[int, EnsembleConnection] = {}
        self.waiting: set = set()  # the standalone gating set; unused here (see EnsembleConnection.send)
        self.dirty: set[EnsembleConnection] = set()
        self.ip_counts: dict[str, int] = collections.Counter()
        self.sent = 0
        self.received = 0
        self.stopped = asyncio.Event()
        # opcode -> [requests, seconds spent handling them] (the admin's /metrics)
        self.request_stats: collections.defaultdict[int, list] = collections.defaultdict(lambda: [0, 0.0])
        self.latencies = LatencyStats()  # request arrival to reply, every request (srvr/mntr latency)
        self.failed: BaseException | None = None
        self._fx: list[Effects] = []
        self._replica_inputs = False  # the deferred replica has inputs not drained yet
        self._synced_term_vote = (disk.hard_state.term, disk.hard_state.vote)
        self._late_events: list = []  # late-watch-events (TEST-ONLY FAULT): held until the next tick
        self._scheduled = False
        self._conn_ids = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = time.monotonic()
        self.peer_poller: PeerPoller | None = None  # started by the admin server (ensemble_view)

    # -- lifecycle

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        await self.transport.start()
        self._server = await loop.create_server(lambda: EnsembleConnection(self), self.cfg.host, self.cfg.port,
                                                reuse_address=True, backlog=512)
        self._tasks.append(asyncio.create_task(self._ticker()))
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            self._server.close()
        self._process()  # carry out (persist) whatever is pending before leaving
        for conn in list(self.connections):
            conn.close()
        await self.transport.close()
        if self._server is not None:
            await self._server.wait_closed()

    def now_ms(self) -> int:
        return int(time.monotonic() * 1000)

    def next_conn_id(self) -> int:
        self._conn_ids += 1
        return self._conn_ids

    # -- connections (what ClientConnection calls)

    def admit(self, conn: EnsembleConnection) -> bool:
        cap = self.cfg.max_client_cnxns
        if cap and self.ip_counts[conn.ip] >= cap:
            return False
        self.ip_counts[conn.ip] += 1
        self.conns[conn.conn_id] = conn
        return True

    def forget(self, conn: EnsembleConnection) -> None:
        self.connections.discard(conn)
        self.dirty.discard(conn)
        if self.conns.pop(conn.conn_id, None) is not None:
            self.run(self.replica.client_disconnect(conn.conn_id))
        if conn.counted_ip:
            conn.counted_ip = False
            self.ip_counts[conn.ip] -= 1
            if self.ip_counts[conn.ip] <= 0:
                del self.ip_counts[conn.ip]
        sid = conn.session_id
        if sid and self.session_conns.get(sid) is conn:
            del self.session_conns[sid]
            self.node.watches.remove_session(sid)

    def reset_stats(self) -> None:
        self.sent = 0
        self.received = 0
        self.latencies = LatencyStats()

    # -- the effect loop

    def run(self, fx: Effects) -> None:
        """Note one input given to the replica (and queue any effects it returned at once).

        The replica is deferred: its inputs return nothing, and `_process` drains it once
        at the end of this loop turn, so the effects of every input of the turn are
        carried out together (one Ready, one fsync, one message per peer)."""
        self._replica_inputs = True
        if not fx.is_empty():
            self._fx.append(fx)
        if not self._scheduled:
            self._schedule()

    def has_pending_effects(self) -> bool:
        return bool(self._fx) or self._replica_inputs

    def kick(self) -> None:
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        if self.failed is not None:
            return
        if self._replica_inputs:
            self._replica_inputs = False
            try:
                fx = self.replica.drain()
            except Exception as exc:
                # Half a Ready was handled: the replica's state is unknown. Stop before
                # anything of it leaves (a failpoint `apply` error takes this path).
                self.failed = exc
                log.critical("the replica failed, this member stops: %r", exc)
                self.stopped.set()
                return
            if not fx.is_empty():
                self._fx.append(fx)
        batch, self._fx = self._fx, []
        if batch:
            fp = self.fp
            early: list[PeerMsg] = []
            later: list[PeerMsg] = []
            for fx in batch:
                for m in fx.messages:
                    (early if _promises_nothing(m) else later).append(m)
            try:
                sync = False
                for fx in batch:
                    for p in fx.persist:
                        self.store.persist(p)
                        if p.snapshot is not None:
                            m = p.snapshot.meta
                            log.info("installed a snapshot from the leader: index %d, term %d, zxid 0x%x (%d bytes)",
                                     m.index, m.term, m.zxid, len(p.snapshot.data))
                        sync = sync or self._needs_fsync(p)
                if early and not (fp.active and fp.hit("peer-send")):
                    # The leader's appends travel while it fsyncs the same entries (Raft
                    # allows this: its own copy counts towards a quorum only because no
                    # acknowledgement can be handled before this fsync returns).
                    self.transport.send_many(early)
                if sync:
                    if fp.active and fp.hit("before-fsync"):
                        raise OSError(errno.EIO, "failpoint before-fsync: error (test-only): fsync failed")
                    # skip-fsync (TEST-ONLY FAULT): written to the OS, never fdatasynced
                    self.store.sync(durable=self.fault != "skip-fsync")
                    if fp.active and fp.hit("after-fsync"):
                        raise OSError(errno.EIO, "failpoint after-fsync: error (test-only): fsync reported failure")
            except Exception as exc:
                # Without durable state no vote, ack or reply may ever leave again.
                self.failed = exc
                log.critical("raft store failed, this member stops: %r", exc)
                self.stopped.set()
                return
            if later and not (fp.active and fp.hit("peer-send")):
                self.transport.send_many(later)
            for fx in batch:
                if fx.events and self.fault == "late-watch-events":
                    self._late_events.extend(fx.events)  # TEST-ONLY FAULT: sent at the next tick
                elif fx.events:
                    self._dispatch_events(fx.events)
            for fx in batch:
                for rep in fx.replies:
                    conn = self.conns.get(rep.conn_id)
                    if conn is None:
                        continue
                    if fp.active and fp.hit("before-reply"):
                        # TEST-ONLY failpoint error: the reply is lost with its connection
                        log.warning("failpoint before-reply: closing %s instead of replying", conn.address)
                        conn.close()
                        continue
                    conn.on_reply(rep)
        if self._fx or self._replica_inputs:
            # Replies released parked requests whose effects are not carried out yet: pump
            # (and so compute reads) only after them, next turn.
            if not self._scheduled:
                self._schedule()
            return
        dirty, self.dirty = self.dirty, set()
        for conn in dirty:
            conn.pump()

    def _needs_fsync(self, p: Any) -> bool:
        """Whether ``p`` must be on disk before anything that depends on it leaves.

        Entries, snapshots, the term and the vote are promises to peers; the
        commit index alone is not (a restarted member learns it again from the
        leader, as etcd-raft's MustSync rules), so a commit-only change rides
        along with the next fsync instead of costing one per round trip.
        """
        if p.entries or p.snapshot is not None or p.compaction is not None:
            return True
        hs = p.hard_state
        if hs is None:
            return False
        tv = (hs.term, hs.vote)
        if tv != self._synced_term_vote:
            self._synced_term_vote = tv
            return True
        return False

    def _dispatch_events(self, events: list) -> None:
        watches = self.node.watches
        conns = self.session_conns
        drop = self.fault == "drop-watch-events"
        for ev in events:
            for sid, wev in watches.trigger(ev):
                conn = conns.get(sid)
                if conn is not None:
                    conn.notified += 1
                    if drop and conn.notified % faults.DROP_EVERY == 0:
                        continue  # TEST-ONLY FAULT: this notification is silently lost
                    conn.send(P.notification(wev.type, P.STATE_SYNC_CONNECTED, wev.path, wev.zxid))

    def _link_lost(self, peer: int) -> None:
        self.run(self.replica.peer_unreachable(peer, _wall_ms()))

    def _peer_batch(self, msgs: list[PeerMsg]) -> None:
        """Every message one read from a peer's socket delivered (the replica is deferred)."""
        now = _wall_ms()
        step = self.replica.peer_message
        for m in msgs:
            self.run(step(m, now))

    # -- timers

    async def _ticker(self) -> None:
        period = self.settings.raft_tick_ms / 1000.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if loop.time() - next_at > 5 * period:
                next_at = loop.time()  # we were stalled; do not fire a burst of ticks
            try:
                if self._late_events:  # late-watch-events (TEST-ONLY FAULT)
                    late, self._late_events = self._late_events, []
                    self._dispatch_events(late)
                    for conn in list(self.connections):
                        conn.pump()
                self.run(self.replica.tick(_wall_ms()))
                self._close_dead_sessions()
            except Exception:
                log.exception("tick failed; continuing")

    def _close_dead_sessions(self) -> None:
        """A session the leader expired (or closed elsewhere): drop its connection here too."""
        live = self.replica.tree.sessions
        for sid, conn in list(self.session_conns.items()):
            if sid not in live:
                log.info("session 0x%x is gone from the replicated state; closing its connection", sid)
                del self.session_conns[sid]
                self.node.watches.remove_session(sid)
                conn.session_id = 0
                conn.send(None)
                conn.pump()

    # -- admin

    def mode(self) -> str:
        st = self.replica.status()
        if st["role"] == "leader":
            return "leader"
        if st["role"] == "follower" and st["leader"] is not None:
            return "follower"
        return "looking"

    def start_peer_poller(self) -> "PeerPoller":
        """Start asking the other members for their state (for ``ensemble_view``); idempotent."""
        if self.peer_poller is None:
            self.peer_poller = PeerPoller(self.cfg.server_id, self.peers)
            self._tasks.append(asyncio.create_task(self.peer_poller.run()))
        return self.peer_poller

    def ensemble_view(self) -> dict:
        """Every member's role, epoch, zxid, sessions, connections (see ``node.admin.http.ensemble_view``)."""
        return _ensemble_view(self)

    def admin_view(self) -> four_letter.AdminView:
        rep = self.replica
        tree = rep.tree
        w = self.node.watches
        by_session = w.by_session()
        by_path = w.by_path()
        _, _, watch_count = w.summary()
        conns = tuple(
            four_letter.ConnectionInfo(c.address, c.session_id, len(c._slots), c.received, c.sent, c.timeout_ms,
                                       rep.last_zxid)
            for c in list(self.connections))
        eph = {sid: list(paths) for sid, paths in tree.ephemerals_by_session.items() if paths}
        cfg = self.cfg
        st = rep.status()
        linked = set(self.transport.connected())
        return four_letter.AdminView(
            mode=self.mode(), zxid=rep.last_zxid, node_count=tree.zk_node_count,
            latency_min_ms=self.latencies.min, latency_avg_ms=self.latencies.avg, latency_max_ms=self.latencies.max,
            received=self.received, sent=self.sent,
            outstanding=sum(len(c._slots) for c in self.connections),
            connections=conns, ephemerals=eph, ephemerals_count=sum(len(v) for v in eph.values()),
            session_timeouts={sid: s.timeout_ms for sid, s in tree.sessions.items()},
            watch_count=watch_count, watched_paths=len(by_path),
            watches_by_session=by_session, watches_by_path=by_path,
            config={
                "clientPort": str(cfg.port), "clientPortAddress": cfg.host, "dataDir": str(cfg.data_dir),
                "tickTime": str(cfg.tick_ms), "maxClientCnxns": str(cfg.max_client_cnxns),
                "minSessionTimeout": str(cfg.min_timeout_ms), "maxSessionTimeout": str(cfg.max_timeout_ms),
                "serverId": str(cfg.server_id), "jute.maxbuffer": str(cfg.max_frame_bytes),
                "peerEpoch": str(st["epoch"]), "leader": str(st["leader"]),
                **{f"server.{p.id}": f"{p.host}:{p.peer_port};{p.client_port}" for p in self.peers.values()},
            },
            fsyncs=self.store.syncs,
            uptime_s=time.monotonic() - self._started,
            approximate_data_size=four_letter.approximate_data_size((p, n.data) for p, n in tree.nodes.items()),
            data_dir_size=(size := four_letter.storage_size(cfg.data_dir)), log_dir_size=size,
            extra_metrics=(
                ("zk_peer_state", self.mode()), ("zk_epoch", st["epoch"]), ("zk_leader_id", st["leader"] or 0),
                ("zk_commit_index", st["commit"]), ("zk_applied_index", st["applied"]),
                ("zk_peers_connected", len(self.transport.connected())), ("zk_quorum_size", len(rep.raft.voters)),
            ) + (four_letter.leader_follower_metrics(
                (p in linked, pr.state.value == "replicate")
                for p, pr in rep.raft.progress.items() if p != rep.id) if st["role"] == "leader" else ()),
        )


# ---------------------------------------------------------------- the ensemble view (admin API)

# How often the admin asks the other members for their state, and how long one ask may take.
# The answer is cached: an admin page polling every 2 s never makes a peer answer more than ~1/s.
PEER_POLL_S = 1.0
PEER_WORD_TIMEOUT_S = 0.5
MAX_WORD_REPLY = 256 * 1024


def status_from_mntr(text: str) -> dict | None:
    """A member's status (the ``Replica.status()`` keys the ensemble view uses) from its ``mntr`` answer.

    Only keys the member reported are filled; None when the answer is not an ensemble member's
    ``mntr`` (no ``zk_server_state``), so a garbled answer is never shown as numbers.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            values[key.strip()] = value.strip()
    if "zk_server_state" not in values:
        return None

    def num(key: str, base: int = 10) -> int | None:
        try:
            return int(values[key], base)
        except (KeyError, ValueError):
            return None

    leader = num("zk_leader_id")
    return {"role": values.get("zk_peer_state", values["zk_server_state"]), "epoch": num("zk_epoch"),
            "leader": leader or None, "last_zxid": num("zk_last_zxid", 16), "sessions": num("zk_global_sessions"),
            "connections": num("zk_num_alive_connections")}


async def ask_word(host: str, port: int, word: str, timeout_s: float = PEER_WORD_TIMEOUT_S) -> str:
    """Send a four-letter word to host:port and read the answer until the member closes (bounded)."""

    async def ask() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(word.encode("ascii"))
            await writer.drain()
            data = await reader.read(MAX_WORD_REPLY)
            chunks = [data]
            while data and sum(map(len, chunks)) < MAX_WORD_REPLY:
                data = await reader.read(MAX_WORD_REPLY)
                chunks.append(data)
            return b"".join(chunks).decode("utf-8", "replace")
        finally:
            writer.close()

    return await asyncio.wait_for(ask(), timeout_s)


class PeerPoller:
    """Asks every other member for ``mntr`` about once a second; keeps the latest answers.

    Runs only while something wants the ensemble view (the admin server), never blocks the
    event loop (each ask is a task with a short timeout), and reports a member it could not
    reach as None (shown as unreachable), not as stale numbers.
    """

    def __init__(self, self_id: int, peers: dict[int, PeerAddress]) -> None:
        self.self_id = self_id
        self.peers = {pid: p for pid, p in peers.items() if pid != self_id}
        self.statuses: dict[int, dict | None] = {}
        self.polled_at: dict[int, float] = {}

    async def poll_once(self) -> None:
        async def one(pid: int, p: PeerAddress) -> None:
            try:
                st = status_from_mntr(await ask_word(p.host, p.client_port, "mntr"))
            except (OSError, asyncio.TimeoutError, UnicodeError):
                st = None
            self.statuses[pid] = st
            self.polled_at[pid] = time.monotonic()

        await asyncio.gather(*(one(pid, p) for pid, p in self.peers.items()))

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - a polling hiccup must not end the view
                log.exception("polling the other members for the ensemble view failed; continuing")
            await asyncio.sleep(PEER_POLL_S)


def _ensemble_view(server: "EnsembleServer") -> dict:
    """``EnsembleServer.ensemble_view``: this member from its replica, the others as last polled."""
    from node.admin.http import ensemble_from_statuses  # node.admin is node's own package

    poller = server.peer_poller
    if poller is None:
        poller = server.start_peer_poller()
    st = server.replica.status()
    me = {"role": server.mode(), "epoch": st["epoch"], "leader": st["leader"], "last_zxid": st["last_zxid"],
          "sessions": st["sessions"], "connections": len(server.connections)}
    statuses: dict[int, dict | None] = {server.cfg.server_id: me}
    statuses.update(poller.statuses)  # members never polled yet stay absent: shown as unknown
    addresses = {pid: f"{p.host}:{p.client_port}" for pid, p in server.peers.items()}
    return ensemble_from_statuses(server.cfg.server_id, addresses, statuses)


# ---------------------------------------------------------------- running a member


async def serve_ensemble(cfg: NodeConfig, ready: Callable[[str, int], None] | None = None,
                         stop: asyncio.Event | None = None, install_signals: bool = True,
                         settings: EnsembleSettings | None = None,
                         admin: tuple[str, int, str | None] | None = None) -> None:
    """Recover the raft store, join the ensemble, serve until stopped (SIGINT/SIGTERM or ``stop``).

    ``admin`` = (host, port, token) also serves the admin HTTP API and web UI, as ``serve`` does.
    """
    peers = parse_peers(cfg.peers)
    if cfg.server_id not in peers:
        raise ValueError(f"--id {cfg.server_id} is not in --peers (ids: {sorted(peers)})")
    settings = settings or EnsembleSettings(raft_tick_ms=cfg.raft_tick_ms)
    directory = cfg.data_dir / "ensemble"
    directory.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_dir(directory)
    store = RaftStore(directory, retain_snapshots=cfg.snap_retain_count,
                      purge_interval_s=cfg.purge_interval_h * 3600.0)
    server = EnsembleServer(cfg, peers, store, settings)

    def started() -> None:
        if server.fault:
            for _ in range(3):
                log.warning("%s", faults.warning(server.fault))
        if admin is not None:
            server.start_peer_poller()
        st = server.replica.status()
        log.info("ensemble member %d of %s: term %d, applied %d, last zxid 0x%x", cfg.server_id, sorted(peers),
                 st["epoch"], st["applied"], st["last_zxid"])

    fp_runner = None
    try:
        if cfg.failpoint_http:
            from node.failpoints import check_http_address, serve_http
            fp_runner = await serve_http(server.fp, *check_http_address(cfg.failpoint_http))
        await serve_until_stopped(server, stop, ready, install_signals, admin, started)
    finally:
        if fp_runner is not None:
            await fp_runner.cleanup()
        store.close()
        os.close(lock_fd)
    if server.failed is not None:
        raise RuntimeError(f"the raft store failed: {server.failed!r}")


__all__ = ["EnsembleConnection", "EnsembleServer", "EnsembleSettings", "EnsembleView", "PeerPoller", "ask_word",
           "serve_ensemble", "status_from_mntr"]
