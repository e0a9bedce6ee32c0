"""Plain records exchanged by consensus cores, and their versioned byte form.

Everything here is data: log entries, snapshots, the peer messages, and the
hard state a node persists. The binary codec exists so the peer protocol in
`node/wire/` can frame a message without knowing its fields; it is versioned
(first byte) so a node can refuse a peer that speaks a newer format instead of
misreading it. Decoding never trusts a length: a truncated, oversized or
unknown-typed buffer raises `MessageDecodeError`, which the shell turns into
"close that one peer connection".
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from node.values import value_record

WIRE_VERSION = 1

COUNTER_BITS = 32
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_TERM = (1 << 32) - 1  # a zxid keeps the term in its upper 32 bits


def make_zxid(term: int, counter: int) -> int:
    """ZooKeeper's transaction id: epoch (here: the Raft term) << 32 | counter."""
    if not 0 <= term <= MAX_TERM:
        raise ValueError(f"term {term} does not fit the 32-bit epoch of a zxid (0..{MAX_TERM})")
    if not 0 <= counter <= COUNTER_MASK:
        raise ValueError(f"counter {counter} does not fit the 32-bit counter of a zxid (0..{COUNTER_MASK})")
    return (term << COUNTER_BITS) | counter


def zxid_epoch(zxid: int) -> int:
    return zxid >> COUNTER_BITS


def zxid_counter(zxid: int) -> int:
    return zxid & COUNTER_MASK


class EntryKind(enum.IntEnum):
    NORMAL = 0  # data proposed by the shell (a ZooKeeper transaction)
    NOOP = 1  # appended by every new leader so it can commit entries of older terms
    CONF = 2  # a membership change: the data is the whole new ConfState (see ConfState)


_ENTRY_KINDS = {k.value: k for k in EntryKind}


@value_record
class Entry:
    """One log entry. `zxid` is assigned by the leader when it appends the entry
    and never changes afterwards; replicas copy it verbatim."""

    term: int
    index: int
    zxid: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def to_bytes(self) -> bytes:
        """Versioned record for the write-ahead log (the WAL adds length and checksum)."""
        return (
            bytes([WIRE_VERSION])
            + _ENTRY.pack(self.term, self.index, self.zxid, int(self.kind), len(self.data))
            + self.data
        )

    @classmethod
    def from_bytes(cls, buf: bytes) -> Entry:
        # Fast path for a well-formed record (recovery decodes every entry of the log).
        head = 1 + _ENTRY.size
        if len(buf) >= head and buf[0] == WIRE_VERSION:
            term, index, zxid, kind, n = _ENTRY.unpack_from(buf, 1)
            if len(buf) == head + n and kind in _ENTRY_KINDS:
                return cls(term, index, zxid, _ENTRY_KINDS[kind], bytes(buf[head:]))
        r = _versioned_reader(buf, "log entry")
        term, index, zxid, kind, n = r.unpack(_ENTRY, "entry header")
        try:
            k = EntryKind(kind)
        except ValueError:
            raise MessageDecodeError(
                f"unknown entry kind {kind}; known kinds are {[x.value for x in EntryKind]}"
            ) from None
        e = cls(term, index, zxid, k, bytes(r.take(n, "entry data")))
        r.finish()
        return e


@dataclass(frozen=True, slots=True)
class ConfState:
    """A membership: the voters, the learners (non-voting members that receive the log) and
    an opaque ``context`` the shell attaches (squall's replica puts the members' addresses
    there, in ZooKeeper's config form). A CONF entry holds a whole ConfState, not a delta,
    so the configuration in force is simply the last CONF entry in the log (Raft thesis §4.1).
    """

    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()
    context: bytes = b""

    def to_bytes(self) -> bytes:
        parts = [bytes([WIRE_VERSION]), _U32.pack(len(self.voters))]
        parts += [_U32.pack(v) for v in self.voters]
        parts.append(_U32.pack(len(self.learners)))
        parts += [_U32.pack(v) for v in self.learners]
        parts += [_U32.pack(len(self.context)), self.context]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, buf: bytes) -> ConfState:
        r = _versioned_reader(buf, "configuration")
        voters = cls._ids(r, "voter")
        learners = cls._ids(r, "learner")
        (n,) = r.unpack(_U32, "context length")
        context = bytes(r.take(n, "context"))
        r.finish()
        if set(voters) & set(learners):
            raise MessageDecodeError(f"configuration lists {sorted(set(voters) & set(learners))} as voter and learner")
        return cls(voters, learners, context)

    @staticmethod
    def _ids(r: _Reader, what: str) -> tuple[int, ...]:
        (n,) = r.unpack(_U32, f"{what} count")
        if n * _U32.size > len(r.buf) - r.pos:
            raise MessageDecodeError(f"{what} count {n} exceeds the record")
        ids = tuple(r.unpack(_U32, what)[0] for _ in range(n))
        if any(i <= 0 for i in ids) or len(set(ids)) != len(ids):
            raise MessageDecodeError(f"{what} ids must be distinct positive integers, got {list(ids)}")
        return ids

    @property
    def members(self) -> frozenset[int]:
        return frozenset(self.voters) | frozenset(self.learners)


# A snapshot's data starts with the configuration at its index (so a member that installs it,
# or restarts from it, knows the membership), then the state machine's own bytes.
_SNAP_CONF_MAGIC = b"SQCONF1\n"


def pack_snapshot_data(conf: ConfState | None, app_data: bytes) -> bytes:
    """Snapshot data carrying ``conf`` (None: the bootstrap membership, nothing recorded)."""
    if conf is None:
        return app_data
    body = conf.to_bytes()
    return _SNAP_CONF_MAGIC + _U32.pack(len(body)) + body + app_data


def unpack_snapshot_data(data: bytes) -> tuple[ConfState | None, bytes]:
    """(the configuration recorded in a snapshot's data, or None; the state machine's bytes).

    Data without the configuration header (written before membership changes existed,
    or with none recorded) is all state machine."""
    if not data.startswith(_SNAP_CONF_MAGIC):
        return None, data
    pos = len(_SNAP_CONF_MAGIC)
    if len(data) < pos + _U32.size:
        raise MessageDecodeError("snapshot configuration header is truncated")
    (n,) = _U32.unpack_from(data, pos)
    pos += _U32.size
    if len(data) < pos + n:
        raise MessageDecodeError(f"snapshot configuration of {n} bytes is truncated")
    return ConfState.from_bytes(data[pos : pos + n]), data[pos + n :]


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stands in the log: it replaces entries 1..index."""

    index: int = 0
    term: int = 0
    zxid: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta = SnapshotMeta()
    data: bytes = b""


@value_record
class HardState:
    """What must be on disk before any message that depends on it is sent."""

    term: int = 0
    vote: int | None = None
    commit: int = 0

    def to_bytes(self) -> bytes:
        # node ids are positive, so 0 encodes "no vote"
        return bytes([WIRE_VERSION]) + _HARD.pack(self.term, self.vote or 0, self.commit)

    @classmethod
    def from_bytes(cls, buf: bytes) -> HardState:
        r = _versioned_reader(buf, "hard state")
        term, vote, commit = r.unpack(_HARD, "hard state")
        r.finish()
        return cls(term, vote or None, commit)


class MessageType(enum.IntEnum):
    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6  # also the answer to SNAPSHOT
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    READ_INDEX = 10  # follower -> leader: "what is your commit index?"
    READ_INDEX_RESP = 11  # leader -> follower, after a quorum confirmed leadership
    DURABLE = 12  # leader -> follower, sent after the fsync: "my log up to `index` is on my disk"


@value_record
class Message:
    """One peer message. Field meanings per type follow etcd-raft:

    - `index`/`log_term`: APPEND: the entry preceding `entries`; VOTE/PRE_VOTE:
      the candidate's last entry; APPEND_RESP: the last index the follower now
      matches (or, when `reject`, the probe index that failed, with
      `reject_hint`/`log_term` naming where the leader should try next);
      READ_INDEX_RESP: the commit index to wait for; DURABLE: the last index of
      the sender's log that is on its disk.
    - `commit`: the sender's commit index (APPEND, HEARTBEAT).
    - `context`: opaque request id for READ_INDEX, echoed by heartbeats.
    """

    type: MessageType
    frm: int
    to: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    context: bytes = b""

    def to_bytes(self) -> bytes:
        return encode_message(self)

    @classmethod
    def from_bytes(cls, buf: bytes) -> Message:
        return decode_message(buf)


class MessageDecodeError(ValueError):
    """A peer sent bytes that are not a message of a version we speak."""


# version, type, frm, to, term, log_term, index, commit, reject, reject_hint, flags
_HEADER = struct.Struct(">BBIIQQQQBQB")
_ENTRY = struct.Struct(">QQQBI")  # term, index, zxid, kind, data length
_SNAP = struct.Struct(">QQQI")  # index, term, zxid, data length
_U32 = struct.Struct(">I")
_HARD = struct.Struct(">QQQ")  # term, vote (0 = none), commit
_FLAG_SNAPSHOT = 1
MAX_ID = (1 << 32) - 1


def encode_message(m: Message) -> bytes:
    flags = _FLAG_SNAPSHOT if m.snapshot is not None else 0
    parts = [
        _HEADER.pack(
            WIRE_VERSION,
            int(m.type),
            m.frm,
            m.to,
            m.term,
            m.log_term,
            m.index,
            m.commit,
            1 if m.reject else 0,
            m.reject_hint,
            flags,
        ),
        _U32.pack(len(m.context)),
        m.context,
        _U32.pack(len(m.entries)),
    ]
    for e in m.entries:
        parts.append(_ENTRY.pack(e.term, e.index, e.zxid, int(e.kind), len(e.data)))
        parts.append(e.data)
    if m.snapshot is not None:
        s = m.snapshot
        parts.append(_SNAP.pack(s.meta.index, s.meta.term, s.meta.zxid, len(s.data)))
        parts.append(s.data)
    return b"".join(parts)


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise MessageDecodeError(
                f"truncated message: {what} needs {n} bytes at offset {self.pos}, only {len(self.buf) - self.pos} left"
            )
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))

    def finish(self) -> None:
        if self.pos != len(self.buf):
            raise MessageDecodeError(f"{len(self.buf) - self.pos} trailing bytes after the record")


def _versioned_reader(buf: bytes, what: str) -> _Reader:
    if not buf:
        raise MessageDecodeError(f"empty {what}")
    if buf[0] != WIRE_VERSION:
        raise MessageDecodeError(f"unsupported {what} version {buf[0]}; this node writes version {WIRE_VERSION}")
    r = _Reader(buf)
    r.pos = 1
    return r


def decode_message(buf: bytes) -> Message:
    if not buf:
        raise MessageDecodeError("empty message")
    if buf[0] != WIRE_VERSION:
        raise MessageDecodeError(
            f"unsupported consensus message version {buf[0]}; this node speaks version {WIRE_VERSION}"
        )
    r = _Reader(buf)
    (_v, mtype, frm, to, term, log_term, index, commit, reject, hint, flags) = r.unpack(_HEADER, "header")
    try:
        mt = MessageType(mtype)
    except ValueError:
        raise MessageDecodeError(
            f"unknown message type {mtype}; known types are {[t.value for t in MessageType]}"
        ) from None
    if reject not in (0, 1):
        raise MessageDecodeError(f"reject flag must be 0 or 1, got {reject}")
    if flags & ~_FLAG_SNAPSHOT:
        raise MessageDecodeError(f"unknown flag bits {flags:#x}; only {_FLAG_SNAPSHOT:#x} is defined")
    (ctx_len,) = r.unpack(_U32, "context length")
    context = bytes(r.take(ctx_len, "context"))
    (n_entries,) = r.unpack(_U32, "entry count")
    # each entry needs at least its fixed header: refuse absurd counts before looping
    if n_entries * _ENTRY.size > len(buf) - r.pos:
        raise MessageDecodeError(f"entry count {n_entries} exceeds what {len(buf)} bytes can hold")
    entries = []
    for i in range(n_entries):
        e_term, e_index, e_zxid, e_kind, e_len = r.unpack(_ENTRY, f"entry {i} header")
        try:
            kind = EntryKind(e_kind)
        except ValueError:
            raise MessageDecodeError(
                f"entry {i} has unknown kind {e_kind}; known kinds are {[k.value for k in EntryKind]}"
            ) from None
        entries.append(Entry(e_term, e_index, e_zxid, kind, bytes(r.take(e_len, f"entry {i} data"))))
    snapshot = None
    if flags & _FLAG_SNAPSHOT:
        s_index, s_term, s_zxid, s_len = r.unpack(_SNAP, "snapshot header")
        snapshot = Snapshot(SnapshotMeta(s_index, s_term, s_zxid), bytes(r.take(s_len, "snapshot data")))
    if r.pos != len(buf):
        raise MessageDecodeError(f"{len(buf) - r.pos} trailing bytes after the message")
    return Message(
        type=mt,
        frm=frm,
        to=to,
        term=term,
        log_term=log_term,
        index=index,
        commit=commit,
        reject=bool(reject),
        reject_hint=hint,
        entries=tuple(entries),
        snapshot=snapshot,
        context=context,
    )


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What a node finds on its disk when it restarts (or empty for a new node).

    `entries` follow the snapshot without a gap (entries[0].index ==
    snapshot.meta.index + 1). `applied` lets a shell whose state machine is
    itself durable say how far it got; otherwise the state machine is rebuilt
    from the snapshot and committed entries are delivered again after it.
    """

    hard_state: HardState = HardState()
    snapshot: Snapshot = Snapshot()
    entries: tuple[Entry, ...] = ()
    applied: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile role information; reported when it changes (not persisted)."""

    role: str
    leader: int | None
    term: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """The answer to `read_index(context)`: once the local applied index reaches
    `index`, this node has seen every write committed before the request."""

    context: bytes
    index: int


@dataclass(frozen=True, slots=True)
class NotLeader:
    """Returned instead of an index when this node cannot accept a proposal.
    `leader` is the known leader's id (forward the request there) or None
    (no leader known: retry later). It is falsy, so `if node.propose(b)` works."""

    leader: int | None
    reason: str = "not the leader"

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ConfRefused:
    """Returned instead of an index when the leader cannot append a configuration change.
    `reason`: "in-progress" (a change is not committed yet), "catch-up" (a new voter does not
    hold the log yet: add it as a learner first), "no-quorum" (too few of the new voters are
    connected and caught up) or "invalid"; `detail` says what exactly. Falsy, like NotLeader."""

    reason: str
    detail: str = ""

    def __bool__(self) -> bool:
        return False


# Messages that promise nothing about the sender's disk: a leader's appends, heartbeats and
# snapshots, and read-index traffic. They may leave before the fsync of the Ready that made them
# (Raft allows a leader to write its log in parallel with sending it; its own copy counts towards
# a quorum only because no acknowledgement can be handled before that fsync returns: the shell
# starts no new Ready while one is being synced). Everything else -- votes, append and heartbeat
# acknowledgements, DURABLE -- is a promise and leaves only after the fsync.
EARLY_TYPES = frozenset(
    {
        MessageType.APPEND,
        MessageType.HEARTBEAT,
        MessageType.SNAPSHOT,
        MessageType.READ_INDEX,
        MessageType.READ_INDEX_RESP,
    }
)


def must_sync(prev: HardState, hard: HardState | None, entries: bool, snapshot: bool) -> bool:
    """Whether a Ready needs an fsync before anything that depends on it leaves (etcd-raft's MustSync).

    New entries, a snapshot, a new term or a new vote are promises to peers; the commit
    index alone is not (a restarted member learns it again from the leader), so a
    commit-only change is written and rides along with the next fsync.
    """
    if entries or snapshot:
        return True
    return hard is not None and (hard.term != prev.term or hard.vote != prev.vote)


@dataclass(slots=True)
class Ready:
    """What the shell must do, in order:

    1. persist `snapshot` (if any), then `entries` (first dropping every
       persisted entry whose index is >= entries[0].index: a new leader may have
       overwritten an uncommitted suffix), then `hard_state` (if not None);
       `early_messages` may be sent from here on (they promise nothing about
       this disk: see EARLY_TYPES);
    2. if `must_sync`, fsync, and start no other Ready until it returns;
    3. send `messages`;
    4. install `snapshot` into the state machine (if any), then apply
       `committed_entries` in order; answer `read_states` once applied reaches
       each one's index; nothing that depends on them may leave the process
       before step 2 is done;
    5. call `advance(ready)`; only then ask for the next Ready.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    early_messages: list[Message] = field(default_factory=list)
    must_sync: bool = False

    def is_empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.committed_entries
            or self.messages
            or self.early_messages
            or self.read_states
        )
