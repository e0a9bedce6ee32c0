"""One ensemble member as a pure state machine: Raft core + data tree + sessions.

A `Replica` owns a `RaftNode` (ordering), a `DataTree` (the replicated state,
session table included) and, while it leads, a `SessionTracker` (expiry). It
does no I/O and reads no clock: every input carries `now_ms`, randomness comes
from the injected `random.Random`, and every input returns an `Effects` that
the shell must carry out **in order**:

1. `persist` (each `Persist` in order); `early` messages may be sent from
   here on (they promise nothing about this disk: a leader's appends,
   read-index traffic, forwards and touches);
2. fsync if `must_sync`;
3. send `messages` (peer messages, `PeerMsg`: votes, acknowledgements);
4. hand `events` to the watch manager, then deliver `replies` to client
   connections (events first: a watch event must reach a client before any
   reply that lets it see the data that triggered it).

Which changes need the fsync and which messages may leave before it are the
core's rules (`Ready.must_sync`, `Ready.early_messages`), passed on here; the
shell's effect loop (`node.runner`) only follows them. Syncing before sending
is what makes a Raft vote or acknowledgement a promise that survives a crash;
syncing before replying is what makes an acknowledged write durable. The
replica applies committed entries to its tree before handing back the
effects, which is safe because nothing that depends on them leaves the
process until the shell has synced.

Writes. The replica the client is connected to wraps the write in a `Txn`
(zxid and time left 0) and submits it: proposes it itself if it leads, else
sends a `Forward` to the leader it knows. The leader wraps it in an envelope
stamped with its own time (`now_ms`) and proposes that. Every replica applies
committed entries in log order; the zxid of a transaction is the zxid of its
Raft entry (stamped at apply time, so it is never guessed). The origin replica
answers the client once *it* has applied the entry, so the client reads its
own writes. Pending submissions (and unanswered syncs) are sent again as soon
as the replica learns of a new leader (a new (term, leader) pair), and any
not applied within `retry_ticks` is submitted again (lost forward); duplicates
are dropped at apply time by their (session id, seq) key, against a bounded per-session window kept
in the replicated state (and in snapshots), so every replica drops the same
ones.

Reads are answered from the applied tree (sequentially consistent, possibly
stale), but in FIFO order behind the same connection's pending writes and
syncs. `Sync` is Raft's ReadIndex: the reply waits until applied >= the
leader's commit point at the time of the request.

Sessions. CreateSession and CloseSession are log entries. Touches (requests,
pings) are batched by followers to the leader once a tick (`Touch`); only the
leader runs the expiry clock and proposes CloseSession for an expired session,
so ephemeral removal is replicated. The leader likewise proposes the
deletion of expired containers and TTL nodes (`container_check_ms`). A new leader gives every session a fresh
full timeout. A client reconnecting (`client_connect`) keeps its session if
the password matches; a replica whose last applied zxid is behind the client's
lastZxidSeen refuses it, so a client never sees the tree go back in time.

TEST-ONLY FAULTS. `unsafe_fault` arms one of the deliberate bugs of
`node.faults` (lose-writes, stale-reads, sync-no-wait, stale-reconnect,
multi-partial, diverge, idempotent-delete, local-version-check,
stale-read-cache, throttle-leak, recovery-truncates-last-entry,
multi-version-off-by-one, disconnect-drops-ephemerals, forwards-reversed,
sequence-from-child-count (through the tree); the Raft core carries
out commit-without-quorum, vote-ignores-log, heartbeat-commit-beyond-match and
read-index-no-quorum; the shell drop-watch-events, skip-fsync,
late-watch-events and setwatches-ignored). Each is an `if` on the production
path that is false unless armed; never arm one outside a test.

See docs/protocol.md ("The replica") for the design and its limits.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, cast

from node import faults
from node.consensus import (
    ConfRefused,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    NotLeader,
    PersistentState,
    RaftNode,
    Role,
    Snapshot,
    decode_conf,
    unpack_snapshot_data,
)
from node.errors import Err, ZkError
from node.failpoints import FailpointError, Failpoints
from node.membership import BOOTSTRAP_VERSION, OBSERVER, Membership, ReconfigError, reconfigure
from node.sessions import SessionTracker, generate_password, new_session_id
from node.tree import (
    CONFIG_PATH,
    ApplyResult,
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteContainerOp,
    DeleteOp,
    ErrorOp,
    MultiOp,
    Perm,
    ReconfigOp,
    SetConfigOp,
    SetDataOp,
    Stat,
    Txn,
    WatchEvent,
    check_acl,
    decode_txn,
    encode_txn,
)
from node.tree.codec import TAG_RECONFIG, txn_op_tag
from node.values import value_record

# ----------------------------------------------------------------------------
# Client requests and replies


@value_record
class Write:
    """A tree write (CreateOp, DeleteOp, SetDataOp, SetACLOp, CheckOp, MultiOp)."""

    op: Any
    identities: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CreateSession:
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class CloseSession:
    pass


@dataclass(frozen=True, slots=True)
class Sync:
    path: str = "/"


@value_record
class Read:
    """A local read: `kind` is "get_data", "exists" or "get_children"."""

    kind: str
    path: str
    identities: tuple[tuple[str, str], ...] = ()


READ_KINDS = ("get_data", "exists", "get_children")


@dataclass(frozen=True, slots=True)
class Reconfig:
    """A client's reconfig request (ZooKeeper's ReconfigRequest): see ``node.membership.reconfigure``.

    Answered, once the membership change is applied here, with
    (config data, Stat of /zookeeper/config), as ZooKeeper answers it."""

    joining: str | None
    leaving: str | None
    new_members: str | None
    from_config: int = -1
    identities: tuple[tuple[str, str], ...] = ()


@value_record
class ClientReply:
    """The answer to request `seq` on connection `conn_id`.

    `err` is a ZooKeeper code (0 = OK). `zxid` is what a ZooKeeper reply header
    carries: the transaction's zxid for a write, the replica's last applied
    zxid for reads, syncs and connects. Values: write -> ApplyResult.value;
    CreateSession -> (session_id, password, timeout_ms); get_data ->
    (data, Stat); exists -> Stat | None; get_children -> (names, Stat);
    connect (seq 0) -> session_id; errors -> a message or None.
    """

    conn_id: int
    seq: int
    err: int
    value: Any
    zxid: int


# ----------------------------------------------------------------------------
# Peer messages: Raft messages plus the replica's own two


@value_record
class RaftMsg:
    msg: Message

    @property
    def frm(self) -> int:
        return self.msg.frm

    @property
    def to(self) -> int:
        return self.msg.to


@value_record
class Forward:
    """A follower's write for the leader to propose. `txn` is encode_txn()
    with zxid/time 0; (session_id, seq) is its dedupe key."""

    frm: int
    to: int
    session_id: int
    seq: int
    txn: bytes


@value_record
class Touch:
    """Sessions that showed life on `frm` since its last Touch."""

    frm: int
    to: int
    sessions: tuple[int, ...]


PeerMsg = RaftMsg | Forward | Touch

PEER_VERSION = 1
_K_RAFT, _K_FORWARD, _K_TOUCH = 1, 2, 3
_PEER_HEAD = struct.Struct(">BBII")  # version, kind, from, to
_FWD = struct.Struct(">qqI")
_U32 = struct.Struct(">I")
_Q = struct.Struct(">q")


class PeerDecodeError(ValueError):
    """A peer frame that is not a valid peer message (the shell closes that link)."""


def encode_peer(m: PeerMsg) -> bytes:
    """Versioned bytes for the peer link (the link adds its own framing)."""
    if isinstance(m, RaftMsg):
        return _PEER_HEAD.pack(PEER_VERSION, _K_RAFT, m.frm, m.to) + m.msg.to_bytes()
    if isinstance(m, Forward):
        return (
            _PEER_HEAD.pack(PEER_VERSION, _K_FORWARD, m.frm, m.to) + _FWD.pack(m.session_id, m.seq, len(m.txn)) + m.txn
        )
    if isinstance(m, Touch):
        return (
            _PEER_HEAD.pack(PEER_VERSION, _K_TOUCH, m.frm, m.to)
            + _U32.pack(len(m.sessions))
            + b"".join(_Q.pack(s) for s in m.sessions)
        )
    raise TypeError(f"not a peer message: {type(m).__name__}")


def decode_peer(buf: bytes) -> PeerMsg:
    """Inverse of encode_peer; raises PeerDecodeError naming the problem."""
    if len(buf) < _PEER_HEAD.size:
        raise PeerDecodeError(f"peer frame of {len(buf)} bytes is shorter than its {_PEER_HEAD.size}-byte header")
    version, kind, frm, to = _PEER_HEAD.unpack_from(buf, 0)
    if version != PEER_VERSION:
        raise PeerDecodeError(f"peer message version {version} is not supported (allowed: {PEER_VERSION})")
    body = bytes(buf[_PEER_HEAD.size :])
    if kind == _K_RAFT:
        try:
            msg = Message.from_bytes(body)
        except ValueError as e:
            raise PeerDecodeError(f"bad raft message: {e}") from None
        if msg.frm != frm or msg.to != to:
            raise PeerDecodeError(f"raft message {msg.frm}->{msg.to} inside a frame addressed {frm}->{to}")
        return RaftMsg(msg)
    if kind == _K_FORWARD:
        if len(body) < _FWD.size:
            raise PeerDecodeError("truncated forward header")
        sid, seq, n = _FWD.unpack_from(body, 0)
        if len(body) != _FWD.size + n:
            raise PeerDecodeError(f"forward says {n} txn bytes, frame holds {len(body) - _FWD.size}")
        return Forward(frm, to, sid, seq, body[_FWD.size :])
    if kind == _K_TOUCH:
        if len(body) < _U32.size:
            raise PeerDecodeError("truncated touch header")
        (n,) = _U32.unpack_from(body, 0)
        if len(body) != _U32.size + 8 * n:
            raise PeerDecodeError(f"touch says {n} sessions, frame holds {len(body) - _U32.size} bytes")
        return Touch(frm, to, tuple(_Q.unpack_from(body, _U32.size + 8 * i)[0] for i in range(n)))
    raise PeerDecodeError(f"unknown peer message kind {kind} (allowed: 1 raft, 2 forward, 3 touch)")


# ----------------------------------------------------------------------------
# Effects and the disk they describe


@value_record
class Persist:
    """One durable write, carried out in order with the others.

    `snapshot`: a snapshot received from the leader; it replaces the whole
    log. `compaction`: a snapshot of our own applied state; entries up to its
    index may be dropped, later ones kept. `entries`: append, first dropping
    every persisted entry at or after entries[0].index. `hard_state`: replace.
    """

    snapshot: Snapshot | None = None
    compaction: Snapshot | None = None
    entries: tuple[Entry, ...] = ()
    hard_state: HardState | None = None


@dataclass(slots=True)
class Effects:
    """What the shell must carry out, in the order of the module docstring."""

    persist: list[Persist] = field(default_factory=list)
    must_sync: bool = False
    messages: list[PeerMsg] = field(default_factory=list)  # sent after the fsync
    replies: list[ClientReply] = field(default_factory=list)
    events: list[WatchEvent] = field(default_factory=list)
    early: list[PeerMsg] = field(default_factory=list)  # may be sent before the fsync

    def is_empty(self) -> bool:
        return not (self.persist or self.messages or self.early or self.replies or self.events)


@dataclass(slots=True)
class ReplicaDisk:
    """What a replica's disk holds: the reference implementation of `Persist`.

    The simulator uses it as the simulated disk; a real shell does the same
    with its write-ahead log and snapshot files.
    """

    hard_state: HardState = HardState()
    snapshot: Snapshot = Snapshot()
    entries: list[Entry] = field(default_factory=list)

    def apply(self, p: Persist) -> None:
        if p.snapshot is not None:
            self.snapshot = p.snapshot
            self.entries = []
        if p.compaction is not None and p.compaction.meta.index > self.snapshot.meta.index:
            self.snapshot = p.compaction
            if self.entries:
                # Entries are consecutive: those up to the snapshot's index are cut by position.
                self.entries = self.entries[max(0, p.compaction.meta.index - self.entries[0].index + 1) :]
        if p.entries:
            first = p.entries[0].index
            if self.entries and first <= self.entries[-1].index:
                # Overwrite from `first` on; entries are consecutive, so the cut is by position.
                del self.entries[max(0, first - self.entries[0].index) :]
            self.entries.extend(p.entries)
        if p.hard_state is not None:
            self.hard_state = p.hard_state

    def state(self) -> PersistentState:
        return PersistentState(self.hard_state, self.snapshot, tuple(self.entries), self.snapshot.meta.index)


# ----------------------------------------------------------------------------
# Replicated envelope and snapshot formats

_ENV = struct.Struct(">Bqqq")  # version, leader time_ms, session_id, seq
_ENV_VERSION = 1
_SNAP_MAGIC = b"SQREPL1\n"
DEDUPE_WINDOW = 256  # per-session (seq) keys remembered for duplicate detection
CLOSED_WINDOW = 4096  # closed session ids remembered, so a late duplicate cannot revive one
# How long a reconfig adding a voter waits for the new server to catch up as an observer.
PROMOTE_MS = 30_000
# How the Raft core's refusal of a membership change is answered (ZooKeeper's codes).
_REFUSAL_CODES = {
    "in-progress": Err.RECONFIG_IN_PROGRESS,
    "no-quorum": Err.NEW_CONFIG_NO_QUORUM,
    "catch-up": Err.NEW_CONFIG_NO_QUORUM,
    "invalid": Err.BAD_ARGUMENTS,
}
# The answer to a write that may or may not have been applied (see
# Replica._settle_after_snapshot). A server shell should treat it like a lost
# connection (ZooKeeper clients then report ConnectionLoss: indeterminate).
OUTCOME_UNKNOWN = Err.OPERATION_TIMEOUT
# What an input of a deferred replica returns (its effects come from drain()). Shared: never mutate it.
_NO_EFFECTS = Effects()


def _envelope(time_ms: int, session_id: int, seq: int, txn: bytes) -> bytes:
    return _ENV.pack(_ENV_VERSION, time_ms, session_id, seq) + txn


def _open_envelope(data: bytes) -> tuple[int, int, int, bytes]:
    if len(data) < _ENV.size:
        raise ValueError(f"entry of {len(data)} bytes is shorter than its envelope")
    version, time_ms, sid, seq = _ENV.unpack_from(data, 0)
    if version != _ENV_VERSION:
        raise ValueError(f"entry envelope version {version} is not supported (allowed: {_ENV_VERSION})")
    return time_ms, sid, seq, data[_ENV.size :]


def snapshot_data(tree: DataTree, seen: dict[int, list[int]] | None = None, closed: Any = ()) -> bytes:
    """A replica snapshot's bytes: the dedupe window (session -> seqs), closed session ids, the tree."""
    seen = seen or {}
    closed = list(closed)
    parts = [_SNAP_MAGIC, _U32.pack(len(seen))]
    for sid in sorted(seen):
        seqs = seen[sid]
        parts.append(_Q.pack(sid) + _U32.pack(len(seqs)) + b"".join(_Q.pack(s) for s in seqs))
    parts.append(_U32.pack(len(closed)))
    parts.extend(_Q.pack(sid) for sid in closed)
    parts.append(tree.serialize())
    return b"".join(parts)


@dataclass(slots=True)
class _Seen:
    """The last DEDUPE_WINDOW seqs applied for one session."""

    order: deque = field(default_factory=lambda: deque(maxlen=DEDUPE_WINDOW))
    keys: set = field(default_factory=set)

    def add(self, seq: int) -> None:
        if len(self.order) == DEDUPE_WINDOW:
            self.keys.discard(self.order[0])
        self.order.append(seq)
        self.keys.add(seq)


# ----------------------------------------------------------------------------
# Per-connection bookkeeping


@dataclass(slots=True)
class _Pending:
    seq: int
    kind: str  # "write" | "sync" | "read"
    read: Read | None = None
    reply: ClientReply | None = None
    sync_index: int | None = None  # sync: the leader's commit point, once known


@dataclass(slots=True)
class _Conn:
    session_id: int
    queue: deque = field(default_factory=deque)


@dataclass(slots=True)
class _Submission:
    """A write this replica must see applied; resubmitted until it is."""

    conn_id: int
    session_id: int
    seq: int
    txn: bytes
    age: int = 0
    obj: Txn | None = None  # the Txn that `txn` encodes (zxid and time 0)
    pending: _Pending | None = None  # its place in the connection's reply queue (found without a scan)


@dataclass(slots=True)
class _SyncReq:
    conn_id: int
    seq: int
    context: bytes = b""
    age: int = 0
    index: int | None = None


class _CachedReads:
    """stale-read-cache (TEST-ONLY): the tree as reads see it, getData through
    a cache that ``Replica._apply`` invalidates (except for multi)."""

    def __init__(self, tree: DataTree, cache: dict[tuple, Any]) -> None:
        self._tree, self._cache = tree, cache

    def get_data(self, path: str, identities: Any = ()) -> Any:
        key = (path, tuple(identities))
        if key not in self._cache:
            self._cache[key] = self._tree.get_data(path, identities)
        return self._cache[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tree, name)


class Replica:
    """One ensemble member. See the module docstring for the contract.

    `disk` is what this replica's disk holds (None for a fresh one).
    `tick_ms` is the real time of one `tick()` (the shell's timer period);
    it rounds session deadlines. `retry_ticks` is how long a submitted write
    or sync may go unanswered before it is submitted again.
    `deferred`: inputs return empty `Effects` and only `drain()` runs the
    Ready loop and returns what they caused, together (the real shell calls
    it once per event-loop turn, so that every proposal and acknowledgement
    of a turn shares one Ready, one fsync and one message per peer). Off,
    every input drains at once (the simulator and most tests).
    `compact_every`: take a snapshot once this many entries were applied
    since the last one (0 = never). `container_check_ms`: how often the
    leader proposes the deletion of expired containers and TTL nodes. `unsafe_commit_without_quorum` is the
    Raft core's TEST-ONLY fault injection (see RaftNode): never set it
    outside tests. `unsafe_fault` is a TEST-ONLY fault of `node.faults`
    (see the module docstring); "" = none. `enforce_quota`: hard quota limits
    refuse writes (ZooKeeper's zookeeper.enforceQuota); every member must agree.
    `failpoints` are the member's TEST-ONLY failpoints (`node.failpoints`; none
    armed by default), shared with its Raft core; the replica passes `apply`,
    `snapshot-save` and `session-expire`.
    """

    def __init__(
        self,
        id: int,
        peers: list[int] | tuple[int, ...],
        disk: PersistentState | None,
        rng: random.Random,
        *,
        tick_ms: int = 100,
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        retry_ticks: int | None = None,
        compact_every: int = 1000,
        container_check_ms: int = 1000,
        deferred: bool = False,
        unsafe_commit_without_quorum: bool = False,
        unsafe_fault: str = "",
        enforce_quota: bool = False,
        membership: Membership | None = None,
        join: bool = False,
        reconfig_enabled: bool = False,
        failpoints: Failpoints | None = None,
    ) -> None:
        self.id = id
        self.fp = failpoints if failpoints is not None else Failpoints()
        self.enforce_quota = enforce_quota
        self.reconfig_enabled = reconfig_enabled
        self._membership_cache: tuple[int, int, Membership | None] = (-1, -1, None)
        if join:
            bootstrap = ConfState(())  # no voters: wait for the leader to add us and send us the log
        elif membership is not None:
            if self.id not in membership.voters + membership.learners:
                raise ValueError(f"member {self.id} is not in the membership {membership.voters + membership.learners}")
            bootstrap = ConfState(membership.voters, membership.learners, _envelope(0, 0, 0, membership.encode()))
        else:
            bootstrap = ConfState(tuple(sorted(set(peers) | {id})))
        self._ever_member = self.id in bootstrap.members
        self.removed = False  # applied a configuration without us (after having been in one)
        self._conf_applied = False
        # leader: reconfig requests waiting for their new voter to catch up: (sid, seq) -> [conf, ticks]
        self._promotions: dict[tuple[int, int], list] = {}
        # leader: reconfig requests waiting, in arrival order, until everything in the log when they
        # arrived is applied (see _leader_reconfig): (sid, seq) -> (request, log index to apply first)
        self._reconfigs_due: dict[tuple[int, int], tuple[bytes, int]] = {}
        self.fault = faults.check(unsafe_fault)
        self._fault_count = 0  # lose-writes: eligible writes seen
        self._stale_tree: DataTree | None = None  # stale-reads: the lagging copy reads are served from
        self._stale_queue: deque = deque()
        # stale-read-cache: (path, identities) -> getData answer; throttle-leak: syncs never released
        self._read_cache: dict[tuple, Any] | None = {} if self.fault == "stale-read-cache" else None
        self._leaked = 0
        self.deferred = deferred
        self.rng = rng
        self.tick_ms = tick_ms
        self.retry_ticks = retry_ticks if retry_ticks is not None else election_ticks
        self.compact_every = compact_every
        # How often the leader looks for expired containers and TTL nodes
        # (ZooKeeper's ContainerManager checks once a minute by default; the
        # standalone node once a second). In ticks, at least one.
        self.container_check_ticks = max(1, -(-container_check_ms // max(1, tick_ms)))
        self._container_age = 0
        if disk is not None and disk.entries and self.fault == "recovery-truncates-last-entry":
            disk = replace(disk, entries=disk.entries[:-1])  # TEST-ONLY FAULT: the last record taken for torn
        self.raft = RaftNode(
            id,
            peers,
            disk,
            random.Random(rng.getrandbits(64)),
            election_ticks=election_ticks,
            heartbeat_ticks=heartbeat_ticks,
            unsafe_commit_without_quorum=unsafe_commit_without_quorum or self.fault == "commit-without-quorum",
            unsafe_fault=self.fault,
            failpoints=self.fp,
            bootstrap=bootstrap,
        )
        # /zookeeper/config is written only from the log: the first leader of a fresh ensemble
        # records the bootstrap configuration as a CONF entry (see _record_bootstrap_conf), so a
        # member that joins later and catches up from the start of the log builds the same tree.
        self.tree = self._new_tree(DataTree())
        self.last_zxid = 0
        self._seen: dict[int, _Seen] = {}
        self._closed: dict[int, None] = {}  # insertion-ordered, at most CLOSED_WINDOW
        self._conns: dict[int, _Conn] = {}
        self._submissions: dict[tuple[int, int], _Submission] = {}
        # Leader: entry index -> (term, Txn) of our own proposals, so applying them skips the decode.
        self._own: dict[int, tuple[int, Txn]] = {}
        self._due: set[int] = set()  # connections whose queued replies may be releasable (see drain)
        self._syncs: list[_SyncReq] = []
        self._sync_counter = 0
        # ReadIndex contexts must never repeat across restarts, or a late
        # answer to a request of a previous incarnation (an older, smaller
        # index) could be taken for a new sync's answer.
        self._ctx_prefix = rng.getrandbits(64)
        self._touched: set[int] = set()
        self._tracker: SessionTracker | None = None
        self._was_leader = False
        # (term, leader) last seen: a change means forwards and ReadIndex
        # requests sent to the previous leader may be lost, so they are sent
        # again at once instead of after retry_ticks.
        self._leader_seen: tuple[int, int] | None = None
        self._now = 0
        self._fx = Effects()
        if disk is not None and disk.snapshot.meta.index > 0:
            # Entries after the snapshot come back as committed entries in the
            # first Ready (the core starts with applied = snapshot index).
            self._install(disk.snapshot)

    # -- public interface -------------------------------------------------------------------

    @property
    def read_tree(self) -> DataTree:
        """The tree local reads are served from (a lagging copy under the stale-reads test fault)."""
        if self._read_cache is not None:  # TEST-ONLY FAULT stale-read-cache
            return cast(DataTree, _CachedReads(self.tree, self._read_cache))
        return self._stale_tree if self._stale_tree is not None else self.tree

    def _new_tree(self, tree: DataTree) -> DataTree:
        """Configure a (new or installed) tree: quota enforcement, and the tree-level test faults."""
        tree.enforce_quota = self.enforce_quota
        if self.fault == "multi-partial":
            tree.unsafe_multi_partial = True
        elif self.fault == "sequence-from-child-count":
            tree.unsafe_sequence_from_child_count = True
        elif self.fault == "stale-reads":
            self._stale_tree = DataTree.deserialize(tree.serialize())
            self._stale_queue.clear()
        return tree

    def _lost_write_value(self, op: Any) -> Any:
        """lose-writes (TEST-ONLY): the plausible answer to a write to drop, or None to apply it.

        Every LOSE_EVERY-th setData or plain persistent create that would succeed."""
        if isinstance(op, SetDataOp):
            try:
                stat = self.tree.exists(op.path)
            except ZkError:
                return None
            if stat is None or op.version not in (-1, stat.version):
                return None
            value: Any = replace(
                stat, version=stat.version + 1, data_length=len(op.data or b""), mzxid=self.last_zxid, mtime=self._now
            )
        elif isinstance(op, CreateOp) and op.kind == "create" and op.flags == 0:
            parent = op.path.rsplit("/", 1)[0] or "/"
            try:
                if self.tree.exists(parent) is None or self.tree.exists(op.path) is not None:
                    return None
            except ZkError:
                return None
            z = self.last_zxid
            value = (op.path, Stat(z, z, self._now, self._now, 0, 0, 0, 0, len(op.data or b""), 0, z))
        else:
            return None
        self._fault_count += 1
        return value if self._fault_count % faults.LOSE_EVERY == 0 else None

    def _check_version_here(self, conn_id: int, conn: _Conn, sid: int, seq: int, request: Write) -> None:
        """local-version-check (TEST-ONLY): judge a conditional setData's version
        against this member's tree, then submit it unconditionally."""
        op = request.op
        try:
            stat = self.tree.exists(op.path)
        except ZkError:
            stat = None
        if stat is not None and stat.version != op.version:
            self._reply_now(conn_id, conn, seq, Err.BAD_VERSION, f"version {stat.version} != {op.version}")
            return
        txn = Txn(0, 0, sid, tuple(request.identities), replace(op, version=-1))
        self._enqueue_write(conn_id, conn, sid, seq, txn)

    def _throttled(self, conn_id: int, conn: _Conn, seq: int, request: Any) -> bool:
        """throttle-leak (TEST-ONLY): syncs take a throttle count they never
        give back; past THROTTLE_LIMIT every request here is refused."""
        if self._leaked >= faults.THROTTLE_LIMIT:
            self._reply_now(conn_id, conn, seq, Err.CONNECTION_LOSS, "too many outstanding requests")
            return True
        self._leaked += isinstance(request, Sync)
        return False

    @property
    def role(self) -> str:
        return self.raft.role.value

    @property
    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER

    @property
    def membership(self) -> Membership | None:
        """The membership in force (the latest configuration in the log), with every member's address:
        whom the shell must keep peer links to. None when the configuration carries no addresses
        (a joiner before it hears from the leader, or a replica built without a membership)."""
        return self._membership_of(self.raft.conf_index, self.raft.conf)

    def _membership_of(self, index: int, conf: ConfState) -> Membership | None:
        epoch = self.raft.log.conf_epoch
        cached_epoch, cached_index, cached = self._membership_cache
        if (cached_epoch, cached_index) == (epoch, index):
            return cached
        result = None
        if conf.context:
            try:
                result = Membership.decode(_open_envelope(conf.context)[3])
            except ValueError:
                result = None
        self._membership_cache = (epoch, index, result)
        return result

    def config_version(self) -> int:
        """The version of the configuration in force (ZooKeeper's lastSeenQuorumVerifier version):
        the zxid of its CONF entry, or for the configuration the log starts from the version the
        tree shows (the bootstrap's, or one a snapshot carried)."""
        idx = self.raft.conf_index
        if idx > self.raft.log.offset:
            z = self.raft.log.zxid(idx)
            if z is not None:
                return z
        for line in self.tree.config_data.decode("utf-8", "replace").splitlines():
            if line.startswith("version="):
                try:
                    return int(line[len("version=") :], 16)
                except ValueError:
                    break
        return BOOTSTRAP_VERSION

    def status(self) -> dict:
        """Role, epoch and last zxid for srvr/mntr and the harness."""
        st = self.raft.status()
        role = st["role"]
        if self.id in self.raft.learners and role == Role.FOLLOWER.value:
            role = "observer"
        return {
            "id": self.id,
            "role": role,
            "epoch": st["term"],
            "leader": st["leader"],
            "last_zxid": self.last_zxid,
            "applied": st["applied"],
            "commit": st["commit"],
            "last_index": st["last_index"],
            "sessions": len(self.tree.sessions),
            "znodes": self.tree.node_count,
            "connections": len(self._conns),
        }

    def tick(self, now_ms: int) -> Effects:
        """One timer tick (every `tick_ms`): Raft time, retries, touches, expiry,
        and (leader, every `container_check_ms`) container/TTL cleanup."""
        self._now = now_ms
        self.raft.tick()
        self._retry()
        self._send_touches()
        self._expire()
        self._reap_containers()
        self._record_bootstrap_conf()
        self._promote()
        if self._conf_applied:
            self._check_removed()
        return self._drain()

    def peer_message(self, m: PeerMsg, now_ms: int) -> Effects:
        self._now = now_ms
        if isinstance(m, RaftMsg):
            self.raft.step(m.msg)
        elif m.to != self.id or m.frm == self.id or (m.frm not in self.raft.voters and m.frm not in self.raft.learners):
            pass  # misaddressed or from a non-member: a bad peer must not be able to inject writes
        elif isinstance(m, Forward):
            if self.is_leader:
                self._propose_write(m.session_id, m.seq, m.txn)
            # Not the leader: drop it; the origin resubmits after retry_ticks.
        elif isinstance(m, Touch):
            if self._tracker is not None:
                for sid in m.sessions:
                    self._tracker.touch(sid, now_ms)
        return self._drain()

    def peer_unreachable(self, peer: int, now_ms: int) -> Effects:
        """The shell lost its link to `peer` (see RaftNode.peer_unreachable)."""
        self._now = now_ms
        self.raft.peer_unreachable(peer)
        return self._drain()

    def client_connect(
        self, conn_id: int, session_id: int, password: bytes, last_zxid_seen: int, now_ms: int
    ) -> Effects:
        """A client (re)attaches to an existing session. Replies with seq 0."""
        self._now = now_ms
        if last_zxid_seen > self.last_zxid and self.fault != "stale-reconnect":
            # ZooKeeper closes such a connection: the client must find a server
            # that has seen at least what it has.
            self._fx.replies.append(
                ClientReply(
                    conn_id,
                    0,
                    Err.CONNECTION_LOSS,
                    f"server is behind the client: last zxid {self.last_zxid:#x} < client's {last_zxid_seen:#x}",
                    self.last_zxid,
                )
            )
        else:
            info = self.tree.sessions.get(session_id)
            if info is None or info.password != bytes(password):
                self._fx.replies.append(
                    ClientReply(conn_id, 0, Err.SESSION_EXPIRED, f"session {session_id:#x} is not live", self.last_zxid)
                )
            else:
                self._conns[conn_id] = _Conn(session_id)
                self._touch(session_id)
                self._fx.replies.append(ClientReply(conn_id, 0, Err.OK, session_id, self.last_zxid))
        return self._drain()

    def client_disconnect(self, conn_id: int) -> Effects:
        """The connection went away: forget its queue (its writes may still apply)."""
        conn = self._conns.pop(conn_id, None)
        if conn is not None and self.fault == "disconnect-drops-ephemerals":
            self._drop_ephemerals(conn.session_id)
        for key in [k for k, s in self._submissions.items() if s.conn_id == conn_id]:
            del self._submissions[key]
        self._syncs = [s for s in self._syncs if s.conn_id != conn_id]
        return self._drain()

    def client_ping(self, conn_id: int, now_ms: int) -> Effects:
        """The session of ``conn_id`` showed life. Never has effects of its own (touches travel
        with the next tick), so a deferred shell need not drain after it."""
        self._now = now_ms
        c = self._conns.get(conn_id)
        if c is not None:
            self._touch(c.session_id)
        return _NO_EFFECTS if self.deferred else self._drain()

    def client_request(self, conn_id: int, session_id: int, seq: int, request: Any, now_ms: int) -> Effects:
        """A write, CreateSession, CloseSession or Sync. `seq` must be unique
        within the session (the client's xid counter): it is the dedupe key."""
        self._now = now_ms
        conn: _Conn | None
        if isinstance(request, CreateSession):
            sid = new_session_id(self.id, self.rng.getrandbits(56))
            password = generate_password(self.rng)
            conn = self._conns.setdefault(conn_id, _Conn(sid))
            conn.session_id = sid
            txn = Txn(0, 0, sid, (), CreateSessionOp(sid, int(request.timeout_ms), password))
            self._enqueue_write(conn_id, conn, sid, seq, txn)
            return self._drain()
        conn = self._checked_conn(conn_id, session_id, seq)
        if conn is None:
            return self._drain()
        if self.fault == "throttle-leak" and self._throttled(conn_id, conn, seq, request):
            return self._drain()  # TEST-ONLY FAULT: refused with ConnectionLoss
        if isinstance(request, Sync) and self.fault == "sync-no-wait":
            # TEST-ONLY FAULT: answered from whatever this replica has applied, no ReadIndex round
            conn.queue.append(_Pending(seq, "sync", reply=ClientReply(conn_id, seq, Err.OK, None, self.last_zxid)))
            self._flush(conn_id)
        elif isinstance(request, Sync):
            conn.queue.append(_Pending(seq, "sync"))
            req = _SyncReq(conn_id, seq)
            self._syncs.append(req)
            self._ask_read_index(req)
        elif isinstance(request, CloseSession):
            self._enqueue_write(conn_id, conn, session_id, seq, Txn(0, 0, session_id, (), CloseSessionOp(session_id)))
        elif (
            isinstance(request, Write)
            and self.fault == "lose-writes"
            and ((lost := self._lost_write_value(request.op)) is not None)
        ):
            self._reply_now(conn_id, conn, seq, Err.OK, lost)  # TEST-ONLY FAULT: acknowledged, never applied
        elif (
            isinstance(request, Write)
            and self.fault == "local-version-check"
            and isinstance(request.op, SetDataOp)
            and request.op.version != -1
        ):
            self._check_version_here(conn_id, conn, session_id, seq, request)  # TEST-ONLY FAULT
        elif isinstance(request, Write):
            self._enqueue_write(
                conn_id, conn, session_id, seq, Txn(0, 0, session_id, tuple(request.identities), request.op)
            )
        elif isinstance(request, Reconfig):
            if not self.reconfig_enabled:
                self._reply_now(
                    conn_id,
                    conn,
                    seq,
                    Err.RECONFIG_DISABLED,
                    "reconfig is disabled on this ensemble (reconfigEnabled=false)",
                )
            elif self.membership is None:
                self._reply_now(
                    conn_id,
                    conn,
                    seq,
                    Err.UNIMPLEMENTED,
                    "reconfig needs an ensemble started with a membership (standalone server)",
                )
            else:
                op = ReconfigOp(request.joining, request.leaving, request.new_members, request.from_config)
                txn = Txn(0, 0, session_id, tuple(request.identities), op)
                self._enqueue_write(conn_id, conn, session_id, seq, txn)
        else:
            self._reply_now(
                conn_id,
                conn,
                seq,
                Err.BAD_ARGUMENTS,
                f"unknown request {type(request).__name__} "
                "(allowed: Write, CreateSession, CloseSession, Sync, Reconfig)",
            )
        return self._drain()

    def client_read(self, conn_id: int, session_id: int, seq: int, read: Read, now_ms: int) -> Effects:
        """A local read, answered after this connection's earlier requests."""
        self._now = now_ms
        conn = self._checked_conn(conn_id, session_id, seq)
        if conn is None:
            return self._drain()
        conn.queue.append(_Pending(seq, "read", read=read))
        self._flush(conn_id)
        return self._drain()

    def _drop_ephemerals(self, sid: int) -> None:
        """TEST-ONLY FAULT disconnect-drops-ephemerals: delete a live session's ephemerals
        (system transactions through the log, as the container reaper's)."""
        if sid not in self.tree.sessions:
            return  # closed or expired: its ephemerals went with it
        for path in sorted(self.tree.ephemerals_by_session.get(sid, ())):
            txn = encode_txn(Txn(0, 0, 0, (), DeleteOp(path)))
            if self.is_leader:
                self.raft.propose(_envelope(self._now, 0, 0, txn))
            elif self.raft.leader is not None:
                self._fx.messages.append(Forward(self.id, self.raft.leader, 0, 0, txn))

    def _checked_conn(self, conn_id: int, session_id: int, seq: int) -> _Conn | None:
        """The connection a request arrived on, if it may be served here.

        A connection this replica does not know (it restarted, or the client
        never attached here) is refused: the client must attach with
        `client_connect`, which checks that we are not behind it.
        """
        conn = self._conns.get(conn_id)
        if conn is None or conn.session_id != session_id:
            self._fx.replies.append(
                ClientReply(
                    conn_id,
                    seq,
                    Err.CONNECTION_LOSS,
                    f"connection {conn_id} is not attached to session {session_id:#x} here: connect first",
                    self.last_zxid,
                )
            )
            return None
        if session_id not in self.tree.sessions:
            self._reply_now(conn_id, conn, seq, Err.SESSION_EXPIRED, f"session {session_id:#x} is not live")
            return None
        self._touch(session_id)
        return conn

    # -- submission of writes ---------------------------------------------------------------

    def _enqueue_write(self, conn_id: int, conn: _Conn, sid: int, seq: int, txn: Txn) -> None:
        pending = _Pending(seq, "write")
        conn.queue.append(pending)
        sub = _Submission(conn_id, sid, seq, encode_txn(txn), obj=txn, pending=pending)
        self._submissions[(sid, seq)] = sub
        self._submit(sub)

    def _submit(self, sub: _Submission) -> None:
        sub.age = 0
        if self.is_leader:
            self._propose_write(sub.session_id, sub.seq, sub.txn, sub.obj)
        elif self.raft.leader is not None:
            fwd = Forward(self.id, self.raft.leader, sub.session_id, sub.seq, sub.txn)
            if self.fault == "forwards-reversed":
                self._fx.early.insert(0, fwd)  # TEST-ONLY FAULT: this turn's forwards leave newest first
            else:
                self._fx.early.append(fwd)
        # No leader known: the retry timer submits it once one is.

    def _propose_write(self, sid: int, seq: int, txn: bytes, obj: Txn | None = None) -> None:
        """The leader proposes a client's write; a reconfig becomes a membership change (or an error).

        ``obj``: the Txn ``txn`` encodes, when this replica built it (then its
        own entry is applied without decoding, see _apply)."""
        if obj is not None:
            reconfig = isinstance(obj.op, ReconfigOp)
        else:
            try:
                reconfig = txn_op_tag(txn) == TAG_RECONFIG
            except ValueError:
                reconfig = False
        if reconfig:
            self._leader_reconfig(sid, seq, txn)
            return
        index = self.raft.propose(_envelope(self._now, sid, seq, txn))
        if not isinstance(index, NotLeader) and obj is not None:
            # Applying our own entry needs no decoding: its Txn is here (see _apply).
            self._own[index] = (self.raft.term, obj)

    def _leader_reconfig(self, sid: int, seq: int, blob: bytes) -> None:
        """Decide a reconfig request once this leader has applied every entry of its log.

        Unlike a write (checked when it is applied, the same on every replica),
        a reconfig is judged by the leader on its applied state (ZooKeeper's
        leader does so on its prepared state). That state may be older than
        what the origin already told its client: with three voters a follower
        commits on the leader's DURABLE word and answers before the leader has
        counted an acknowledgement, and a deferred replica applies only when
        its turn drains. So a client's reconfig right after its new session, or
        right after an earlier reconfig, could be refused SessionExpired,
        ReconfigInProgress or BadVersion where ZooKeeper accepts it. Whatever
        the origin had applied is in this leader's log, so the request waits
        (in arrival order) until the leader applied its log as it stood when
        the request arrived: at once when nothing is in flight, else within a
        round trip (``_decide_reconfigs``, from ``drain``). A leader that steps
        down forgets the waiting requests; their origins resubmit them.

        Only "a change is in progress" is judged on arrival, on the log as it
        stands (ZooKeeper's leader compares its last proposed configuration
        with the committed one): of two racing requests the second is refused
        ReconfigInProgress, as ZooKeeper refuses it, instead of waiting for the
        first to commit.
        """
        key = (sid, seq)
        seen = self._seen.get(sid)
        if (seen is not None and seq in seen.keys) or key in self._promotions or key in self._reconfigs_due:
            return  # a resubmission of one applied, waiting for its voter, or waiting here
        if self.raft.conf_change_pending() or self._promotions:
            self._refuse_reconfig(sid, seq, Err.RECONFIG_IN_PROGRESS)
            return
        barrier = self.raft.log.last_index()
        if self._reconfigs_due or self.raft.log.applied < barrier:
            self._reconfigs_due[key] = (blob, barrier)
            return
        self._decide_reconfig(sid, seq, blob)

    def _decide_reconfigs(self) -> bool:
        """(drain) Decide the waiting reconfig requests whose log prefix is applied; True if any was."""
        if not self.is_leader:
            self._reconfigs_due.clear()  # the origin resubmits to the next leader
            return False
        applied = self.raft.log.applied
        decided = False
        while self._reconfigs_due:
            key, (blob, barrier) = next(iter(self._reconfigs_due.items()))
            if applied < barrier:
                break
            del self._reconfigs_due[key]
            self._decide_reconfig(key[0], key[1], blob)
            decided = True
        return decided

    def _decide_reconfig(self, sid: int, seq: int, blob: bytes) -> None:
        """Validate a reconfig request as ZooKeeper's leader does, then propose the new membership.

        Checks in ZooKeeper's order (PrepRequestProcessor): reconfig enabled,
        live session, no change in progress, the base version, the request's
        syntax and the rule of at least two voters, a connected quorum of the
        new voters, WRITE on /zookeeper/config. A refusal is logged as an
        ErrorOp under the request's (session, seq) key, so the replica the
        client waits on answers it with the code, as for any failed write.
        """
        seen = self._seen.get(sid)
        if seen is not None and seq in seen.keys:
            return  # a resubmission of a reconfig already applied: its origin answers from that
        if (sid, seq) in self._promotions:
            return  # a resubmission of one waiting for its new voter to catch up
        code, conf = self._reconfig_decision(sid, seq, blob)
        if conf is not None and self._needs_catch_up(sid, seq, conf):
            return
        if conf is not None:
            result = self.raft.propose_conf_change(conf)
            if isinstance(result, NotLeader):
                return  # the origin resubmits to the next leader
            if not isinstance(result, ConfRefused):
                return
            code = _REFUSAL_CODES.get(result.reason, Err.BAD_ARGUMENTS)
        self._refuse_reconfig(sid, seq, code)

    def _refuse_reconfig(self, sid: int, seq: int, code: int) -> None:
        """Log the refusal under the request's key: the replica its client waits on answers ``code``."""
        txn = Txn(0, 0, sid, (), ErrorOp(int(code)))
        self.raft.propose(_envelope(self._now, sid, seq, encode_txn(txn)))

    def _needs_catch_up(self, sid: int, seq: int, conf: ConfState) -> bool:
        """A new voter that does not hold the log yet joins as an observer first (Raft thesis §4.2.1).

        The change is then carried out in two steps: this leader adds the server
        as a learner (a system entry), and once it is caught up, proposes the
        change asked for under the request's key (``_promote``); the client gets
        its answer when that is applied, or NewConfigNoQuorum if the server does
        not catch up within ``PROMOTE_MS`` (it then stays an observer)."""
        raft = self.raft
        new_voters = [p for p in conf.voters if p not in raft.voters and not raft.synced(p)]
        if not new_voters:
            return False
        p = new_voters[0]
        if p not in raft.learners:
            try:
                wanted = Membership.decode(_open_envelope(conf.context)[3])
                current = self.membership
            except ValueError:
                return False
            member = wanted.get(p)
            if current is None or member is None:
                return False
            interim = current.with_member(replace(member, role=OBSERVER))
            step = ConfState(interim.voters, interim.learners, _envelope(self._now, 0, 0, interim.encode()))
            if raft.conf_change_refusal(step) is not None:
                return False  # answered with the refusal of the whole change
            raft.propose_conf_change(step)
        self._promotions[(sid, seq)] = [conf, 0]
        return True

    def _promote(self) -> None:
        """Leader, every tick: propose the changes whose new voter has caught up (see _needs_catch_up)."""
        if not self._promotions:
            return
        if not self.is_leader:
            self._promotions.clear()  # the origin resubmits to the next leader
            return
        for key, state in list(self._promotions.items()):
            conf, age = state
            state[1] = age + 1
            sid, seq = key
            refused = self.raft.conf_change_refusal(conf)
            if refused is None:
                del self._promotions[key]
                self.raft.propose_conf_change(conf)
            elif state[1] * self.tick_ms >= PROMOTE_MS or (
                isinstance(refused, ConfRefused) and refused.reason == "invalid"
            ):
                del self._promotions[key]
                txn = Txn(0, 0, sid, (), ErrorOp(int(Err.NEW_CONFIG_NO_QUORUM)))
                self.raft.propose(_envelope(self._now, sid, seq, encode_txn(txn)))

    def _reconfig_decision(self, sid: int, seq: int, blob: bytes) -> tuple[int, ConfState | None]:
        try:
            txn = decode_txn(blob)
        except ValueError:
            return Err.MARSHALLING_ERROR, None
        op = txn.op
        if not isinstance(op, ReconfigOp):
            return Err.MARSHALLING_ERROR, None
        if not self.reconfig_enabled:
            return Err.RECONFIG_DISABLED, None
        if sid not in self.tree.sessions:
            return Err.SESSION_EXPIRED, None
        current = self.membership
        if current is None:
            return Err.UNIMPLEMENTED, None
        if self.raft.conf_change_pending() or self._promotions:
            return Err.RECONFIG_IN_PROGRESS, None
        if op.from_config != -1 and op.from_config != self.config_version():
            return Err.BAD_VERSION, None
        try:
            new = reconfigure(current, op.joining, op.leaving, op.new_members)
        except ReconfigError as e:
            return e.code, None
        conf = ConfState(new.voters, new.learners, _envelope(self._now, sid, seq, new.encode()))
        refused = self.raft.conf_change_refusal(conf)
        if isinstance(refused, ConfRefused) and refused.reason != "catch-up":  # catch-up: see _needs_catch_up
            return _REFUSAL_CODES.get(refused.reason, Err.BAD_ARGUMENTS), None
        config = self.tree.nodes[CONFIG_PATH]
        if not check_acl(config.acl, Perm.WRITE, txn.identities):
            return Err.NO_AUTH, None
        return Err.OK, conf

    def _retry(self) -> None:
        for sub in list(self._submissions.values()):
            sub.age += 1
            if sub.age >= self.retry_ticks:
                self._submit(sub)
        for req in self._syncs:
            if req.index is None:
                req.age += 1
                if req.age >= self.retry_ticks or not req.context:
                    self._ask_read_index(req)

    def _on_leader_change(self) -> None:
        """Resubmit pending writes and unanswered syncs when a new leader is known.

        A forward sent to a leader that then died or stepped down is dropped
        (or was never received); waiting retry_ticks to notice would add an
        election timeout's worth of latency to every write in flight at a
        failover. Resending is safe: duplicates are dropped at apply time by
        their (session id, seq) key, and a sync's ReadIndex gets a new context.
        """
        leader = self.raft.leader
        if leader is None:
            return
        seen = (self.raft.term, leader)
        if seen == self._leader_seen:
            return
        self._leader_seen = seen
        for sub in list(self._submissions.values()):
            self._submit(sub)
        for req in self._syncs:
            if req.index is None:
                self._ask_read_index(req)

    def _ask_read_index(self, req: _SyncReq) -> None:
        self._sync_counter += 1
        req.context = struct.pack(">IQQ", self.id, self._ctx_prefix, self._sync_counter)
        req.age = 0
        if isinstance(self.raft.read_index(req.context), NotLeader):
            req.context = b""  # no leader known: ask again next tick

    # -- sessions ---------------------------------------------------------------------------

    def _touch(self, sid: int) -> None:
        if self._tracker is not None:
            self._tracker.touch(sid, self._now)
        else:
            self._touched.add(sid)

    def _send_touches(self) -> None:
        if self._touched and not self.is_leader and self.raft.leader is not None:
            self._fx.early.append(Touch(self.id, self.raft.leader, tuple(sorted(self._touched))))
            self._touched = set()

    def _expire(self) -> None:
        if self._tracker is None:
            return
        for sid in self._tracker.expired(self._now):
            if self.fp.active and self.fp.hit("session-expire"):
                self._tracker.retry_expiry(sid)  # TEST-ONLY failpoint error: not proposed; next tick
                continue
            txn = Txn(0, 0, sid, (), CloseSessionOp(sid))
            # seq 0: system transactions are not deduplicated (closing twice is harmless)
            self.raft.propose(_envelope(self._now, sid, 0, encode_txn(txn)))

    def _record_bootstrap_conf(self) -> None:
        """The leader of a fresh ensemble appends its bootstrap configuration as a CONF entry.

        Until then the membership lives only in the members' start-up
        arguments; once it is in the log, /zookeeper/config shows it (its
        version is that entry's zxid) and a member added later learns it
        from the log like every other change. Not a membership change (same
        voters), so it waits only for this leader's first commit."""
        raft = self.raft
        if not self.is_leader or raft.conf_index != 0 or not raft.conf.context:
            return
        try:
            body = _open_envelope(raft.conf.context)[3]
        except ValueError:
            return
        conf = ConfState(raft.conf.voters, raft.conf.learners, _envelope(self._now, 0, 0, body))
        if raft.conf_change_refusal(conf) is None:
            raft.propose_conf_change(conf)

    def _reap_containers(self) -> None:
        """The leader proposes deleting expired containers and TTL nodes.

        Like ZooKeeper's ContainerManager: a system transaction (session 0,
        seq 0, so never deduplicated) per path, checked against the applied
        tree; apply re-checks (the node may have gained a child or been
        modified since), so a stale or repeated proposal is harmless: it
        fails with NO_NODE / NOT_EMPTY on every replica alike. TTLs are judged
        by the leader's clock, the same clock that stamps every mtime.
        """
        if not self.is_leader:
            self._container_age = 0
            return
        self._container_age += 1
        if self._container_age < self.container_check_ticks:
            return
        self._container_age = 0
        for path in self.tree.expired_containers_and_ttls(self._now):
            txn = Txn(0, 0, 0, (), DeleteContainerOp(path))
            self.raft.propose(_envelope(self._now, 0, 0, encode_txn(txn)))

    def _on_role(self) -> None:
        raft = self.raft
        leader = raft.role is Role.LEADER
        if leader == self._was_leader and (raft.term, raft.leader) == self._leader_seen:
            return  # no new leader, no change of our own role (the common case: nothing to do)
        self._on_leader_change()
        if leader and not self._was_leader:
            # We cannot know when followers last heard from a client: give every
            # session a full timeout from now (as ZooKeeper's new leader does).
            self._tracker = SessionTracker(self.tick_ms, self.id if self.id <= 254 else 0, self._now)
            for sid, info in self.tree.sessions.items():
                self._tracker.add(sid, info.timeout_ms, self._now)
            for sid in self._touched:
                self._tracker.touch(sid, self._now)
            self._touched = set()
        elif not leader and self._was_leader:
            self._tracker = None
            self._own.clear()  # entries we proposed and did not apply yet are decoded if they apply
        self._was_leader = leader

    # -- the Ready loop ---------------------------------------------------------------------

    def _drain(self) -> Effects:
        if self.deferred:
            return _NO_EFFECTS  # shared and never mutated: a deferred input's effects come from drain()
        return self.drain()

    def drain(self) -> Effects:
        """Run the Ready loop and return every effect accumulated since the last drain."""
        raft = self.raft
        self._on_role()
        while raft.has_ready() or (self._reconfigs_due and self._decide_reconfigs() and raft.has_ready()):
            rd = raft.ready()
            if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
                self._fx.persist.append(
                    Persist(snapshot=rd.snapshot, entries=tuple(rd.entries), hard_state=rd.hard_state)
                )
            if rd.must_sync:
                self._fx.must_sync = True
            if rd.early_messages:
                self._fx.early.extend(RaftMsg(m) for m in rd.early_messages)
            if rd.messages:
                self._fx.messages.extend(RaftMsg(m) for m in rd.messages)
            if rd.snapshot is not None:
                self._install(rd.snapshot)
                self._conf_applied = True
            for e in rd.committed_entries:
                self._apply(e)
            for rs in rd.read_states:
                for req in self._syncs:
                    if req.context == rs.context:
                        req.index = rs.index
            raft.advance(rd)
            if self._conf_applied:
                self._check_removed()
            self._on_role()
            self._maybe_compact()
        if self._syncs:
            self._answer_syncs()
        if self._due:
            due, self._due = self._due, set()
            for conn_id in sorted(due):
                self._flush(conn_id)
        fx, self._fx = self._fx, Effects()
        return fx

    def _apply(self, e: Entry) -> None:
        if self.fp.active and self.fp.hit("apply"):
            # TEST-ONLY failpoint error: this member cannot apply a committed entry; it must stop
            raise FailpointError(f"failpoint apply: error applying entry {e.index} (zxid {e.zxid:#x})")
        if e.kind is EntryKind.NOOP:
            self.last_zxid = e.zxid
            return
        own = self._own.pop(e.index, None) if self._own else None
        try:
            if e.kind is EntryKind.CONF:
                time_ms, sid, seq, txn = self._conf_txn(e)
            elif own is not None and own[0] == e.term and len(e.data) >= _ENV.size:
                # Our own proposal of this term: the same bytes every replica decodes, whose Txn we hold.
                version, time_ms, sid, seq = _ENV.unpack_from(e.data, 0)
                t = own[1]
                if version != _ENV_VERSION:
                    raise ValueError(f"entry envelope version {version} is not supported")
                txn = Txn(e.zxid, time_ms, t.session_id, t.identities, t.op)
            else:
                time_ms, sid, seq, body = _open_envelope(e.data)
                t = decode_txn(body)
                txn = Txn(e.zxid, time_ms, t.session_id, t.identities, t.op)
        except ValueError:
            # Every replica decodes the same bytes, so every replica skips the
            # same entry: skipping keeps them identical, crashing would not.
            self.last_zxid = e.zxid
            return
        self.last_zxid = e.zxid
        if e.kind is EntryKind.CONF:
            self._conf_applied = True
        if seq != 0:
            seen = self._seen.get(sid)
            if seen is None:
                seen = self._seen[sid] = _Seen()
            elif seq in seen.keys:
                if e.kind is EntryKind.CONF:
                    # The core adopted this configuration when it appended it: the tree shows it
                    # too, whoever asked. Only the reply is a duplicate's.
                    self._fx.events.extend(self.tree.apply(txn).events)
                return  # a resubmitted duplicate: applied already
            seen.add(seq)
        op = txn.op
        fault = self.fault
        if fault:
            if fault == "diverge" and isinstance(op, SetDataOp) and self.id == max(self.raft.voters):
                # TEST-ONLY FAULT: this member applies different data than the others
                op = replace(op, data=(op.data or b"") + faults.DIVERGE_SUFFIX)
                txn = replace(txn, op=op)
            if fault == "multi-version-off-by-one" and isinstance(op, MultiOp):
                op = self._off_by_one(op)  # TEST-ONLY FAULT: a version one behind passes the check
                txn = replace(txn, op=op)
        if isinstance(op, CreateSessionOp) and op.session_id in self._closed:
            # A late duplicate of the CreateSession of a session that has
            # since been closed or expired: a dead session stays dead.
            res = ApplyResult(Err.SESSION_EXPIRED)
        else:
            res = self.tree.apply(txn)
        if fault:
            if fault == "idempotent-delete" and isinstance(op, DeleteOp) and res.err == Err.NO_NODE:
                res = ApplyResult(Err.OK)  # TEST-ONLY FAULT: a delete of a missing znode "succeeds"
            if self._read_cache is not None and not isinstance(op, MultiOp):  # TEST-ONLY FAULT stale-read-cache:
                for key in [k for k in self._read_cache if k[0] == getattr(op, "path", None)]:  # multi forgotten
                    del self._read_cache[key]
            if self._stale_tree is not None:  # TEST-ONLY FAULT stale-reads: the read copy lags behind
                self._stale_queue.append(txn)
                while len(self._stale_queue) > faults.STALE_LAG:
                    self._stale_tree.apply(self._stale_queue.popleft())
        if res.events:
            self._fx.events.extend(res.events)
        if isinstance(op, CreateSessionOp) and res.err == Err.OK:
            if self._tracker is not None:
                self._tracker.add(op.session_id, op.timeout_ms, self._now)
            value: Any = (op.session_id, op.password, op.timeout_ms)
        elif isinstance(op, SetConfigOp) and res.err == Err.OK:
            value = (bytes(op.data), res.value)  # a reconfig's answer: the new config and its Stat
        else:
            value = res.value
            if isinstance(op, CloseSessionOp):
                self._seen.pop(op.session_id, None)
                self._closed[op.session_id] = None
                if len(self._closed) > CLOSED_WINDOW:
                    del self._closed[next(iter(self._closed))]
                if self._tracker is not None:
                    self._tracker.remove(op.session_id)
        sub = self._submissions.pop((sid, seq), None) if seq != 0 else None
        if sub is not None:
            p = sub.pending
            # Still queued on a live connection (client_disconnect drops its submissions).
            if p is not None and p.reply is None and sub.conn_id in self._conns:
                p.reply = ClientReply(sub.conn_id, seq, int(res.err), value, e.zxid)
                self._due.add(sub.conn_id)

    def _conf_txn(self, e: Entry) -> tuple[int, int, int, Txn]:
        """A CONF entry as the tree applies it: /zookeeper/config gets the new membership, whose
        version is the entry's zxid. ValueError for an entry this replica cannot read."""
        conf = decode_conf(e)
        if conf is None:
            raise ValueError("malformed configuration entry")
        time_ms, sid, seq, body = _open_envelope(conf.context)
        membership = Membership.decode(body)
        return time_ms, sid, seq, Txn(e.zxid, time_ms, 0, (), SetConfigOp(membership.render(e.zxid)))

    def _check_removed(self) -> None:
        """After applying a configuration: are we still in it? (A removed member stops serving.)

        Only once no leader has sent us anything for an election timeout (the
        leader sends a removed member the log for that long after its removal
        committed, then stops) and we applied all the leader said was
        committed: a member added again under an old id (a wiped disk) replays
        the history of its former self, its removal included, while the leader
        streams it the entries up to the one that re-added it."""
        log = self.raft.log
        conf = log.conf_at(max(log.applied, log.offset))
        if self.id in conf.members:
            self._ever_member = True
            self._conf_applied = False
        elif not self._ever_member:
            self._conf_applied = False
        elif (
            self.raft.leader is None
            and log.applied >= self.raft.leader_commit
            and self.id not in self.raft.conf.members
        ):
            # (the latest configuration in our log, which may already add us back, excludes us too)
            self._conf_applied = False
            self.removed = True
        # else: still catching up; looked at again after the next apply (_conf_applied stays set)

    def _off_by_one(self, multi: MultiOp) -> MultiOp:
        """multi-version-off-by-one (TEST-ONLY): each setData/check whose version is exactly
        one behind the node's is let through, as `version < current - 1` would."""
        ops = []
        for o in multi.ops:
            if isinstance(o, (SetDataOp, CheckOp)) and o.version >= 0:
                try:
                    stat = self.tree.exists(o.path)
                except ZkError:
                    stat = None
                if stat is not None and o.version == stat.version - 1:
                    o = replace(o, version=stat.version)
            ops.append(o)
        return replace(multi, ops=tuple(ops))

    def _answer_syncs(self) -> None:
        applied = self.raft.log.applied
        done = [r for r in self._syncs if r.index is not None and r.index <= applied]
        if not done:
            return
        self._syncs = [r for r in self._syncs if not (r.index is not None and r.index <= applied)]
        for r in done:
            conn = self._conns.get(r.conn_id)
            if conn is None:
                continue
            for p in conn.queue:
                if p.kind == "sync" and p.seq == r.seq and p.reply is None:
                    p.reply = ClientReply(r.conn_id, r.seq, Err.OK, None, self.last_zxid)
                    self._due.add(r.conn_id)
                    break

    def _flush(self, conn_id: int) -> None:
        """Release replies in request order: a read waits behind earlier writes."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        q = conn.queue
        while q:
            head = q[0]
            if head.kind == "read" and head.reply is None:
                head.reply = self._serve_read(conn_id, head.seq, head.read)
            if head.reply is None:
                return
            self._fx.replies.append(head.reply)
            q.popleft()

    def _reply_now(self, conn_id: int, conn: _Conn, seq: int, err: int, value: Any) -> None:
        conn.queue.append(_Pending(seq, "read", reply=ClientReply(conn_id, seq, int(err), value, self.last_zxid)))
        self._flush(conn_id)

    def _serve_read(self, conn_id: int, seq: int, read: Read | None) -> ClientReply:
        z = self.last_zxid
        try:
            if read is None or read.kind not in READ_KINDS:
                kind = None if read is None else read.kind
                return ClientReply(
                    conn_id, seq, Err.BAD_ARGUMENTS, f"unknown read {kind!r} (allowed: {', '.join(READ_KINDS)})", z
                )
            tree = self.read_tree
            if read.kind == "get_data":
                return ClientReply(conn_id, seq, Err.OK, tree.get_data(read.path, read.identities), z)
            if read.kind == "exists":
                return ClientReply(conn_id, seq, Err.OK, tree.exists(read.path), z)
            return ClientReply(conn_id, seq, Err.OK, tree.get_children(read.path, read.identities), z)
        except ZkError as e:
            return ClientReply(conn_id, seq, int(e.code), e.message, z)

    # -- snapshots --------------------------------------------------------------------------

    def _snapshot_bytes(self) -> bytes:
        return snapshot_data(self.tree, {sid: list(seen.order) for sid, seen in self._seen.items()}, self._closed)

    def _install(self, snap: Snapshot) -> None:
        _conf, data = unpack_snapshot_data(snap.data)
        if not data.startswith(_SNAP_MAGIC):
            raise ValueError("not a squall replica snapshot (bad magic)")
        pos = len(_SNAP_MAGIC)
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        seen: dict[int, _Seen] = {}
        for _ in range(n):
            (sid,) = _Q.unpack_from(data, pos)
            (k,) = _U32.unpack_from(data, pos + 8)
            pos += 12
            s = _Seen()
            for i in range(k):
                s.add(_Q.unpack_from(data, pos + 8 * i)[0])
            pos += 8 * k
            seen[sid] = s
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        self._closed = {_Q.unpack_from(data, pos + 8 * i)[0]: None for i in range(n)}
        pos += 8 * n
        self.tree = self._new_tree(DataTree.deserialize(data[pos:]))
        if self._read_cache is not None:
            self._read_cache.clear()
        self._own.clear()
        self._seen = seen
        self.last_zxid = snap.meta.zxid
        self._settle_after_snapshot()
        if self._tracker is not None:
            self._tracker = None
            self._was_leader = False
            self._on_role()

    def _settle_after_snapshot(self) -> None:
        """Pending writes whose outcome the snapshot hides get OUTCOME_UNKNOWN.

        A snapshot skips the individual entries it covers, so a write of ours
        it contains (its key is in the dedupe window) was applied with a
        result we never saw; and once its session is closed its key is
        forgotten, so a resubmitted copy would be answered SESSION_EXPIRED
        although the original may have succeeded. Neither may get a definite
        answer. Pending writes of live sessions not in the window were not
        applied yet and stay pending.
        """
        for key, sub in list(self._submissions.items()):
            sid, seq = key
            seen = self._seen.get(sid)
            if sid in self._closed or (seen is not None and seq in seen.keys):
                del self._submissions[key]
                conn = self._conns.get(sub.conn_id)
                if conn is None:
                    continue
                for p in conn.queue:
                    if p.kind == "write" and p.seq == seq and p.reply is None:
                        p.reply = ClientReply(
                            sub.conn_id,
                            seq,
                            OUTCOME_UNKNOWN,
                            "outcome unknown: this server learned it from a snapshot",
                            self.last_zxid,
                        )
                        self._due.add(sub.conn_id)
                        break

    def _maybe_compact(self) -> None:
        log = self.raft.log
        if self.compact_every <= 0 or log.applied - log.offset < self.compact_every:
            return
        if not self.raft.has_ready():
            if self.fp.active and self.fp.hit("snapshot-save"):
                return  # TEST-ONLY failpoint error: not taken now; tried again after the next entry
            snap = self.raft.compact(log.applied, self._snapshot_bytes())
            self._fx.persist.append(Persist(compaction=snap))
            self._fx.must_sync = True


__all__ = [
    "OUTCOME_UNKNOWN",
    "ClientReply",
    "CloseSession",
    "CreateSession",
    "Effects",
    "Forward",
    "PeerDecodeError",
    "PeerMsg",
    "Persist",
    "Reconfig",
    "RaftMsg",
    "Read",
    "Replica",
    "ReplicaDisk",
    "Sync",
    "Touch",
    "Write",
    "decode_peer",
    "encode_peer",
    "snapshot_data",
]
