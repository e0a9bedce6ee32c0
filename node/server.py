"""The node's shell: one member of a Raft group, alone or one of three or five, on one code path.

A standalone node (``squall node`` without ``--peers``) is a one-voter group:
the same :class:`MemberServer`, ``Replica``, Raft core and Raft store as an
ensemble member, whose sole voter elects itself on its first tick and then
commits each write as soon as its own fsync returns. Only what is about other
members is absent (no peer port, no peer transport), and it reports itself as
ZooKeeper does (``Mode: standalone``).

The replica (``node.replica``) decides everything; this shell carries out
what it returns through the effect runner (``node.runner``): once per event
loop turn the replica is drained and the batch persisted, synced and sent,
then its watch events dispatched and client replies released (group commit).
Client connections are ``node.connection``; the disk is
``node.storage.raftlog.RaftStore`` in ``DATA_DIR/ensemble``; the peer link is
``node.peer``.

TEST-ONLY FAULTS (``node.faults``, armed by ``--unsafe-test-fault``): the
replica carries out most; this shell carries out ``drop-watch-events`` and
``late-watch-events`` (in ``_dispatch_events``), ``skip-fsync`` (in
:class:`StoreDisk`) and ``setwatches-ignored`` (in ``node.connection``).
Inert unless armed.

TEST-ONLY FAILPOINTS (``node.failpoints``, ``--failpoint NAME=ACTION`` or at run
time with ``--failpoint-http``): one ``Failpoints`` set per member, shared by
the replica, its Raft core and the effect runner (the fsync and peer-send
points); this shell passes ``before-reply`` (in ``_deliver_replies``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from node import faults
from node.admin import four_letter
from node.admin.peers import PeerPoller, ensemble_from_statuses
from node.config import NodeConfig
from node.connection import ClientConnection, wall_ms
from node.failpoints import Failpoints
from node.membership import Member, Membership
from node.metrics import LatencyStats, NodeMetrics
from node.peer import PeerAddress, PeerTransport, parse_peers
from node.replica import ClientReply, Effects, PeerMsg, Persist, Replica
from node.runner import EffectRunner
from node.sasl import load_jaas_users
from node.storage import open_member_store
from node.storage.raftlog import RaftStore
from node.watches import WatchManager
from node.wire import protocol as P

log = logging.getLogger("squall.node")

# ZooKeeper starts its read-only server max(2 s, tickTime) after its member lost the quorum.
READ_ONLY_DELAY_MS = 2000


@dataclass(frozen=True)
class Timing:
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


class StoreDisk:
    """The effect runner's disk: a RaftStore, fsynced on the event loop or in a disk thread.

    Inline (the default, ``--fsync-inline``) the loop blocks for each fsync, which on a
    fast disk costs less than handing every commit to a thread and back; with a disk
    thread (``--fsync-in-thread``) the loop keeps reading requests during the fsync, and
    everything that arrives meanwhile shares the next one. ``durable=False`` is the
    TEST-ONLY ``skip-fsync`` fault: written to the OS, never fdatasynced.
    """

    def __init__(
        self,
        store: RaftStore,
        *,
        in_thread: bool = False,
        durable: bool = True,
        installed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.durable = durable
        self._installed = installed  # after a snapshot from the leader replaced the state
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="squall-disk")
            if in_thread
            else None
        )

    def persist(self, p: Persist) -> None:
        self.store.persist(p)
        if p.snapshot is not None:
            m = p.snapshot.meta
            log.info(
                "installed a snapshot from the leader: index %d, term %d, zxid 0x%x (%d bytes)",
                m.index,
                m.term,
                m.zxid,
                len(p.snapshot.data),
            )
            self._installed()

    def sync(self, done: Callable[[BaseException | None], None]) -> None:
        if self._pool is None:
            try:
                self.store.sync(durable=self.durable)
            except Exception as exc:
                done(exc)
                return
            done(None)
            return
        fut = asyncio.get_running_loop().run_in_executor(self._pool, self.store.sync, self.durable)
        fut.add_done_callback(lambda f: done(f.exception()))

    def inline(self) -> None:
        """From now on fsync on the calling thread (shutdown: the last batch is synced at once)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class MemberServer:
    """Client port, peer port (with other members), timers and disk of one member."""

    def __init__(
        self, cfg: NodeConfig, members: dict[int, PeerAddress], store: RaftStore, timing: Timing = Timing()
    ) -> None:
        self.cfg = cfg
        self.members = members  # every member, this one included; {} when standalone
        self.store = store
        self.timing = timing
        disk = store.state()
        fresh = disk.hard_state.term == 0 and not disk.entries and disk.snapshot.meta.index == 0
        voters = sorted(members) if members else [cfg.server_id]
        self.fp = Failpoints(cfg.failpoints, rng=random.Random(os.urandom(16)))
        self.replica = Replica(
            cfg.server_id,
            voters,
            None if fresh else disk,
            random.Random(os.urandom(16)),
            tick_ms=timing.raft_tick_ms,
            election_ticks=timing.election_ticks,
            heartbeat_ticks=timing.heartbeat_ticks,
            retry_ticks=timing.retry_ticks,
            compact_every=cfg.snapshot_every,
            deferred=True,
            unsafe_fault=cfg.unsafe_test_fault,
            enforce_quota=cfg.enforce_quota,
            membership=membership_of(members) if members else None,
            join=cfg.join,
            reconfig_enabled=cfg.reconfig_enabled,
            failpoints=self.fp,
        )
        self._known: dict[int, PeerAddress] = dict(members)  # how to reach each member (--peers, then the log)
        # This member's own address book (--peers / zoo.cfg): how IT reaches each peer, which
        # may differ from member to member (a proxy per link, a NAT'd or per-network address).
        # The replicated configuration's addresses are the view of whoever proposed it (its
        # own --peers); they are used only for members this book does not name (added by a
        # reconfig). Moving a member to a new address therefore means a new --peers here too.
        self._configured: dict[int, PeerAddress] = dict(members)
        self._membership_seen: Membership | None = None
        self.rng = random.Random(os.urandom(16))
        self.read_only_mode = False  # --read-only and no quorum: serving read-only sessions
        # SASL DIGEST-MD5 users of --jaas-config (node.sasl); validated with the config
        self.sasl_users: dict[str, str] = load_jaas_users(cfg.jaas_config) if cfg.jaas_config else {}
        self._leaderless_since: float | None = None
        self.fault = self.replica.fault
        self.watches = WatchManager()
        self.metrics = NodeMetrics()
        self.latencies = LatencyStats()  # request arrival to reply, every request (srvr/mntr latency)
        self.transport: PeerTransport | None = None
        if len(members) > 1:
            self.transport = PeerTransport(
                cfg.server_id,
                members,
                None,
                on_batch=self._peer_batch,
                on_link_lost=self._link_lost,
                listen_host=members[cfg.server_id].host,
            )
        self.disk = StoreDisk(
            store,
            in_thread=not cfg.fsync_inline,
            durable=self.fault != "skip-fsync",
            installed=self._snapshot_installed,
        )
        self.runner = EffectRunner(
            self.replica,
            self.disk,
            schedule=self._call_soon,
            send=self._send,
            events=self._dispatch_events,
            replies=self._deliver_replies,
            idle=self._pump_dirty,
            failed=self._disk_failed,
            synced=self.metrics.fsync_done,
        )
        self.connections: set[ClientConnection] = set()
        self.conns: dict[int, ClientConnection] = {}
        self.session_conns: dict[int, ClientConnection] = {}
        self.dirty: set[ClientConnection] = set()
        self.ip_counts: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.received = 0
        self.stopped = asyncio.Event()
        # opcode -> [requests, seconds spent handling them] (the admin's /metrics)
        self.request_stats: collections.defaultdict[int, list] = collections.defaultdict(lambda: [0, 0.0])
        self.failed: BaseException | None = None
        self._late_events: list = []  # late-watch-events (TEST-ONLY FAULT): held until the next tick
        self._conn_ids = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it serves on (set by start)
        self.peer_poller: PeerPoller | None = None  # started by the admin server (ensemble_view)

    @property
    def standalone(self) -> bool:
        """A one-voter group: ZooKeeper calls such a server standalone."""
        return len(self.replica.raft.voters) == 1

    # -- lifecycle

    async def start(self) -> tuple[str, int]:
        loop = self._loop = asyncio.get_running_loop()  # turns are scheduled on the loop that serves
        if self.transport is not None:
            await self.transport.start()
        # The first tick before the port opens: a sole voter is then already the leader.
        self.run(self.replica.tick(wall_ms()))
        self.runner.turn()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), self.cfg.host, self.cfg.port, reuse_address=True, backlog=512
        )
        self._tasks.append(asyncio.create_task(self._ticker()))
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            self._server.close()
        # Carry out (persist) whatever is pending before leaving.
        while self.runner.syncing and self.failed is None:
            await asyncio.sleep(0.001)
        self.disk.inline()
        self.runner.turn()
        for conn in list(self.connections):
            conn.close()
        if self.transport is not None:
            await self.transport.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _snapshot_installed(self) -> None:
        """The tree jumped to the leader's snapshot: the changes in between fired no watch.

        ZooKeeper's learner serves no client while it resyncs from the leader, so its
        clients reconnect and re-register their watches (setWatches fires those whose znode
        changed since the client's last zxid). Do the same: close every client connection
        (sessions live on), so no client reads the new state through watches that missed it."""
        if self.connections:
            log.info(
                "closing %d client connection(s): their watches missed the snapshot's changes", len(self.connections)
            )
        for conn in list(self.connections):
            conn.abort("this member installed a snapshot from the leader; reconnect to re-register watches")

    def _call_soon(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(fn)

    def next_conn_id(self) -> int:
        self._conn_ids += 1
        return self._conn_ids

    # -- connections (what ClientConnection calls)

    def admit(self, conn: ClientConnection) -> bool:
        cap = self.cfg.max_client_cnxns
        if cap and self.ip_counts[conn.ip] >= cap:
            return False
        self.ip_counts[conn.ip] += 1
        self.conns[conn.conn_id] = conn
        self.connections.add(conn)
        return True

    def forget(self, conn: ClientConnection) -> None:
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
            self.watches.remove_session(sid)

    def reset_stats(self) -> None:
        self.sent = 0
        self.received = 0
        self.latencies = LatencyStats()

    # -- the effect loop (node.runner)

    def run(self, fx: Effects) -> None:
        """Note one input given to the replica; its effects are carried out this turn."""
        self.runner.input(fx)

    def busy(self) -> bool:
        return self.runner.busy()

    def kick(self) -> None:
        self.runner.kick()

    def _send(self, msgs: list[PeerMsg]) -> None:
        if self.transport is not None:
            self.transport.send_many(msgs)

    def _dispatch_events(self, events: list, late: bool = False) -> None:
        if self.fault == "late-watch-events" and not late:
            self._late_events.extend(events)  # TEST-ONLY FAULT: sent at the next tick, after this turn's replies
            return
        watches = self.watches
        if watches.empty():
            return  # nobody watches anything (the common case of a write-heavy load)
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

    def _deliver_replies(self, replies: list[ClientReply]) -> None:
        conns = self.conns
        fp = self.fp
        for rep in replies:
            conn = conns.get(rep.conn_id)
            if conn is None:
                continue
            if fp.active and fp.hit("before-reply"):
                # TEST-ONLY failpoint error: the reply is lost with its connection
                log.warning("failpoint before-reply: closing %s instead of replying", conn.address)
                conn.close()
                continue
            conn.on_reply(rep)

    def _pump_dirty(self) -> None:
        dirty, self.dirty = self.dirty, set()
        for conn in dirty:
            conn.pump()

    def _disk_failed(self, exc: BaseException) -> None:
        # Without durable state no vote, ack or reply may ever leave again (the runner also
        # stops here when a failpoint `apply` error leaves the replica's state unknown).
        self.failed = exc
        log.critical("raft store failed, this member stops: %r", exc)
        self.stopped.set()

    def _link_lost(self, peer: int) -> None:
        self.run(self.replica.peer_unreachable(peer, wall_ms()))

    def _peer_batch(self, msgs: list[PeerMsg]) -> None:
        """Every message one read from a peer's socket delivered (the replica is deferred)."""
        now = wall_ms()
        step = self.replica.peer_message
        for m in msgs:
            self.run(step(m, now))

    # -- timers

    async def _ticker(self) -> None:
        period = self.timing.raft_tick_ms / 1000.0
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
                    self._dispatch_events(late, late=True)
                    for conn in list(self.connections):
                        conn.pump()
                self.run(self.replica.tick(wall_ms()))
                self._close_dead_sessions()
                self._follow_membership()
                self._check_read_only()
            except Exception:
                log.exception("tick failed; continuing")

    def _follow_membership(self) -> None:
        """Keep peer links to the members the replica talks to; stop when this member was removed."""
        rep = self.replica
        if self.transport is not None:
            m = rep.membership
            if m is not None and m is not self._membership_seen:
                self._membership_seen = m
                for member in m.members:
                    addr = _address_of(member, self._known.get(member.id))
                    local = self._configured.get(member.id)
                    # dial a member this member was told of as it was told; the configuration gives its role
                    self._known[member.id] = addr if local is None else replace(local, role=addr.role)
                log.info("membership: voters %s, observers %s", list(m.voters), list(m.learners))
            if m is None:
                ids = set(self._known)  # a joiner that knows no configuration yet: whoever it was told of
            else:
                ids = set(rep.raft.peers_to_contact) | {mm.id for mm in m.members}
                if rep.raft.leader is not None:
                    ids.add(rep.raft.leader)
            wanted = {pid: self._known[pid] for pid in ids if pid in self._known}
            wanted[self.cfg.server_id] = self._known[self.cfg.server_id]
            if set(wanted) != set(self.transport.peers) or any(
                self.transport.peers.get(p) != a for p, a in wanted.items()
            ):
                self.transport.set_peers(wanted)
                members = rep.raft.conf.members | {self.cfg.server_id}
                self.members = {pid: a for pid, a in self._known.items() if pid in members}
        if rep.removed and not self.stopped.is_set():
            log.warning(
                "this member (%d) applied a configuration without itself: it was removed from the "
                "ensemble by a reconfig; stopping (wipe its data dir to add it again with --join)",
                self.cfg.server_id,
            )
            self.stopped.set()

    def _check_read_only(self) -> None:
        """Enter read-only mode after max(READ_ONLY_DELAY_MS, tickTime) without a leader; leave it with one.

        Only a member of the configuration in force that applied something
        may serve read-only (a joiner has nothing to show). Leaving closes every
        read-only session, as ZooKeeper's read-only server shuts down: the
        clients find a read-write server (kazoo polls ``isro`` for one)."""
        if not self.cfg.read_only or self.standalone:
            return
        rep = self.replica
        cut_off = rep.raft.leader is None and rep.id in rep.raft.conf.members and rep.last_zxid > 0
        now = time.monotonic()
        if cut_off:
            if self._leaderless_since is None:
                self._leaderless_since = now
            elif not self.read_only_mode and (now - self._leaderless_since) * 1000 >= max(
                READ_ONLY_DELAY_MS, self.cfg.tick_ms
            ):
                self.read_only_mode = True
                log.warning(
                    "no quorum for %.1f s: serving read-only sessions (readonlymode.enabled)",
                    now - self._leaderless_since,
                )
            return
        self._leaderless_since = None
        if self.read_only_mode:
            self.read_only_mode = False
            ro = [c for c in self.connections if c.read_only_session]
            log.info(
                "quorum back (leader %s): leaving read-only mode, closing %d read-only sessions",
                rep.raft.leader,
                len(ro),
            )
            for conn in ro:
                if conn.session_id and self.session_conns.get(conn.session_id) is conn:
                    del self.session_conns[conn.session_id]
                    self.watches.remove_session(conn.session_id)
                conn.session_id = 0
                conn.send(None)
                conn.pump()

    def _close_dead_sessions(self) -> None:
        """A session the leader expired (or closed elsewhere): drop its connection here too."""
        live = self.replica.tree.sessions
        for sid, conn in list(self.session_conns.items()):
            if sid not in live and not conn.read_only_session:
                log.info("session 0x%x is gone from the replicated state; closing its connection", sid)
                del self.session_conns[sid]
                self.watches.remove_session(sid)
                conn.session_id = 0
                conn.send(None)
                conn.pump()

    # -- admin

    def mode(self) -> str:
        st = self.replica.status()
        if st["role"] == "leader":
            return "standalone" if self.standalone else "leader"
        if self.read_only_mode:
            return "read-only"
        if st["role"] == "observer" and st["leader"] is not None:
            return "observer"
        if st["role"] == "follower" and st["leader"] is not None:
            return "follower"
        return "looking"

    def client_addresses(self) -> dict[int, str]:
        """member id -> its client address (this member's own for a standalone node)."""
        if not self.members:
            return {self.cfg.server_id: f"{self.cfg.host}:{self.cfg.port}"}
        return {pid: f"{p.host}:{p.client_port}" for pid, p in self.members.items()}

    def start_peer_poller(self) -> PeerPoller:
        """Start asking the other members for their state (for ``ensemble_view``); idempotent."""
        if self.peer_poller is None:
            others = {pid: (p.host, p.client_port) for pid, p in self.members.items() if pid != self.cfg.server_id}
            self.peer_poller = PeerPoller(others)
            if others:
                self._tasks.append(asyncio.create_task(self.peer_poller.run()))
        return self.peer_poller

    def ensemble_view(self) -> dict:
        """Every member's role, epoch, zxid, sessions, connections: this one from its replica, the
        others as last polled (``node.admin.peers``)."""
        poller = self.start_peer_poller()
        st = self.replica.status()
        me = {
            "role": self.mode(),
            "epoch": st["epoch"],
            "leader": st["leader"],
            "last_zxid": st["last_zxid"],
            "sessions": st["sessions"],
            "connections": len(self.connections),
        }
        statuses: dict[int, dict | None] = {self.cfg.server_id: me}
        statuses.update(poller.statuses)  # members never polled yet stay absent: shown as unknown
        return ensemble_from_statuses(self.cfg.server_id, self.client_addresses(), statuses)

    def admin_view(self) -> four_letter.AdminView:
        rep = self.replica
        tree = rep.tree
        w = self.watches
        by_session = w.by_session()
        by_path = w.by_path()
        _, _, watch_count = w.summary()
        conns = tuple(
            four_letter.ConnectionInfo(
                c.address, c.session_id, len(c._slots), c.received, c.sent, c.timeout_ms, rep.last_zxid
            )
            for c in list(self.connections)
        )
        eph = {sid: list(paths) for sid, paths in tree.ephemerals_by_session.items() if paths}
        cfg = self.cfg
        st = rep.status()
        mode = self.mode()
        config = {
            "clientPort": str(cfg.port),
            "clientPortAddress": cfg.host,
            "dataDir": str(cfg.data_dir),
            "dataLogDir": str(cfg.data_dir),
            "tickTime": str(cfg.tick_ms),
            "maxClientCnxns": str(cfg.max_client_cnxns),
            "minSessionTimeout": str(cfg.min_timeout_ms),
            "maxSessionTimeout": str(cfg.max_timeout_ms),
            "serverId": str(cfg.server_id),
            "jute.maxbuffer": str(cfg.max_frame_bytes),
        }
        extra: tuple[tuple[str, object], ...] = ()  # a standalone node's mntr has ZooKeeper's keys only
        if not self.standalone:
            config.update(
                {
                    "peerEpoch": str(st["epoch"]),
                    "leader": str(st["leader"]),
                    **{f"server.{p.id}": f"{p.host}:{p.peer_port};{p.client_port}" for p in self.members.values()},
                }
            )
            linked = set(self.transport.connected()) if self.transport is not None else set()
            extra = (
                ("zk_peer_state", mode),
                ("zk_epoch", st["epoch"]),
                ("zk_leader_id", st["leader"] or 0),
                ("zk_commit_index", st["commit"]),
                ("zk_applied_index", st["applied"]),
                ("zk_peers_connected", len(linked)),
                ("zk_quorum_size", len(rep.raft.voters)),
            ) + (
                four_letter.leader_follower_metrics(
                    (p in linked, pr.state.value == "replicate") for p, pr in rep.raft.progress.items() if p != rep.id
                )
                if st["role"] == "leader"
                else ()
            )
        return four_letter.AdminView(
            mode=mode,
            zxid=rep.last_zxid,
            node_count=tree.zk_node_count,
            latency_min_ms=self.latencies.min,
            latency_avg_ms=self.latencies.avg,
            latency_max_ms=self.latencies.max,
            received=self.received,
            sent=self.sent,
            outstanding=sum(len(c._slots) for c in self.connections),
            connections=conns,
            ephemerals=eph,
            ephemerals_count=sum(len(v) for v in eph.values()),
            session_timeouts={sid: s.timeout_ms for sid, s in tree.sessions.items()},
            watch_count=watch_count,
            watched_paths=len(by_path),
            watches_by_session=by_session,
            watches_by_path=by_path,
            config=config,
            fsyncs=self.store.syncs,
            uptime_s=time.monotonic() - self._started,
            approximate_data_size=four_letter.approximate_data_size((p, n.data) for p, n in tree.nodes.items()),
            data_dir_size=(size := four_letter.storage_size(cfg.data_dir)),
            log_dir_size=size,
            extra_metrics=extra,
        )


# ---------------------------------------------------------------- running a node


def membership_of(peers: dict[int, PeerAddress]) -> Membership:
    """The bootstrap membership (with addresses, in ZooKeeper's terms) of a peer list."""
    return Membership(
        tuple(Member(p.id, p.host, p.peer_port, p.election_port, p.role, p.host, p.client_port) for p in peers.values())
    )


def _address_of(member: Member, known: PeerAddress | None) -> PeerAddress:
    """A member's peer address as the transport needs it."""
    client_port = member.client_port if member.client_port is not None else (known.client_port if known else 0)
    return PeerAddress(member.id, member.host, client_port, member.peer_port, member.election_port, member.role)


async def serve(
    cfg: NodeConfig,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
    admin: tuple[str, int, str | None] | None = None,
    timing: Timing | None = None,
) -> None:
    """Recover the data dir, serve (alone, or as a member of ``cfg.peers``) until stopped.

    Stops on ``stop``, SIGINT/SIGTERM (with ``install_signals``) or a failed disk. ``admin`` =
    (host, port, token) also serves the admin HTTP API and web UI.
    """
    members = parse_peers(cfg.peers, any_size=cfg.join) if cfg.peers else {}
    if members and cfg.server_id not in members:
        raise ValueError(f"--id {cfg.server_id} is not in --peers (ids: {sorted(members)})")
    if len(members) == 1 and not cfg.join:
        members = {}  # a one-member list is a standalone node (it needs no peer port)
    faults.check(cfg.unsafe_test_fault, members=len(members) or 1)
    timing = timing or Timing(raft_tick_ms=cfg.raft_tick_ms)
    store, lock_fd = open_member_store(
        cfg.data_dir, retain_snapshots=cfg.snap_retain_count, purge_interval_s=cfg.purge_interval_h * 3600.0
    )
    try:
        server = MemberServer(cfg, members, store, timing)
    except BaseException:
        store.close()
        os.close(lock_fd)
        raise

    def started() -> None:
        if server.fault:
            for _ in range(3):
                log.warning("%s", faults.warning(server.fault))
        if admin is not None and members:
            server.start_peer_poller()
        st = server.replica.status()
        who = f"member {cfg.server_id} of {sorted(members)}" if members else f"standalone (server id {cfg.server_id})"
        log.info(
            "%s: term %d, applied %d, last zxid 0x%x, %d znodes, %d sessions",
            who,
            st["epoch"],
            st["applied"],
            st["last_zxid"],
            st["znodes"],
            st["sessions"],
        )

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
        raise RuntimeError(f"this member stopped: {server.failed!r}")


async def serve_until_stopped(
    server: Any,
    stop: asyncio.Event | None,
    ready: Callable[[str, int], None] | None,
    install_signals: bool,
    admin: tuple[str, int, str | None] | None,
    started: Callable[[], None] | None = None,
) -> None:
    """Start ``server`` (and, with ``admin`` = (host, port, token), the admin HTTP API), announce
    the address, wait for ``stop``, SIGINT/SIGTERM (with ``install_signals``) or a fatal stop
    of the server, then stop both. ``started`` runs once both are up."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    admin_runner = None
    try:
        host, port = await server.start()
        if admin is not None:
            from node.admin.http import start_admin

            admin_runner = await start_admin(server, *admin)
        if started is not None:
            started()
        log.info("squall node serving on %s:%d", host, port)
        if ready is not None:
            ready(host, port)
        stopper = asyncio.create_task(stop.wait())
        fatal = asyncio.create_task(server.stopped.wait())
        await asyncio.wait({stopper, fatal}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        fatal.cancel()
        log.info("shutting down")
    finally:
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        try:
            if admin_runner is not None:
                await admin_runner.close()
        finally:
            await server.stop()


class BackgroundNode:
    """A node serving from a background thread with its own event loop (tests, benches, embedding).

    ``with BackgroundNode(cfg) as n: KazooClient(n.hosts)...``; leaving the
    block stops the node and joins the thread, even when the body failed.
    """

    def __init__(self, cfg: NodeConfig, start_timeout_s: float = 30.0) -> None:
        self.cfg = cfg
        self.start_timeout_s = start_timeout_s
        self.host = cfg.host
        self.port = cfg.port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: Any = None
        self._ready: Any = None
        self.error: BaseException | None = None

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> BackgroundNode:
        import threading

        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="squall-node", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            raise RuntimeError(f"node did not start within {self.start_timeout_s} s")
        if self.error is not None:
            raise RuntimeError(f"node failed to start: {self.error!r}") from self.error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(host: str, port: int) -> None:
                self.host, self.port = host, port
                self._ready.set()

            await serve(self.cfg, ready=ready, stop=self._stop, install_signals=False)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the starting thread
            self.error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> BackgroundNode:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["BackgroundNode", "MemberServer", "StoreDisk", "Timing", "serve", "serve_until_stopped"]
