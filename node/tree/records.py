"""The tree's records: Stat, ACL entries, the operations (also the payloads of log entries), Txn and results.

Plain data, no behaviour beyond small helpers: every other module of the
tree (and the replica, the shell and the codec) speaks in these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from node.values import value_record

# --------------------------------------------------------------------------
# Stat, ACLs, permissions
# --------------------------------------------------------------------------


@value_record
class Stat:
    """A znode's metadata exactly as it goes on the wire (68 bytes in jute)."""

    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int


class Perm(enum.IntFlag):
    """ZooKeeper's ACL permission bits (``ZooDefs.Perms``)."""

    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


@dataclass(frozen=True, slots=True)
class ACL:
    """One access-control entry: permission bits granted to ``scheme:id``."""

    perms: int
    scheme: str
    id: str


OPEN_ACL_UNSAFE: tuple[ACL, ...] = (ACL(int(Perm.ALL), "world", "anyone"),)
READ_ACL_UNSAFE: tuple[ACL, ...] = (ACL(int(Perm.READ), "world", "anyone"),)
CREATOR_ALL_ACL: tuple[ACL, ...] = (ACL(int(Perm.ALL), "auth", ""),)

Identity = tuple[str, str]


# --------------------------------------------------------------------------
# Ops (also the payloads of log entries) and transactions
# --------------------------------------------------------------------------

# Create flags (CreateMode); 4 container, 5/6 TTL need extended types.
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6
VALID_FLAGS = frozenset(range(7))

CREATE_KINDS = ("create", "create2", "createContainer", "createTTL")


@value_record
class CreateOp:
    """create / create2 / createContainer / createTTL.

    ``flags``: 0 persistent, 1 ephemeral, 2 sequential, 3 ephemeral-sequential,
    4 container, 5 persistent-with-TTL, 6 persistent-sequential-with-TTL.
    ``ttl`` must be -1 unless the flags are 5/6 (then 1..MAX_TTL_MS), as in
    ZooKeeper. ``kind`` names the client opcode; it changes only what the
    server encodes in the reply (create -> path; the others -> path + Stat),
    except that ``createContainer`` always makes a container. ``data`` may be
    None: ZooKeeper keeps null data apart from b"" (getData returns null).
    """

    path: str
    data: bytes | None
    acl: tuple[ACL, ...]
    flags: int = 0
    ttl: int = -1
    kind: str = "create"


@value_record
class DeleteOp:
    path: str
    version: int = -1


@value_record
class SetDataOp:
    path: str
    data: bytes | None
    version: int = -1


@dataclass(frozen=True, slots=True)
class SetACLOp:
    path: str
    acl: tuple[ACL, ...]
    version: int = -1


@dataclass(frozen=True, slots=True)
class CheckOp:
    """Multi's version check (needs READ on the node)."""

    path: str
    version: int = -1


@dataclass(frozen=True, slots=True)
class MultiOp:
    """All-or-nothing list of Create/Delete/SetData/Check ops (one zxid)."""

    ops: tuple


@dataclass(frozen=True, slots=True)
class CreateSessionOp:
    session_id: int
    timeout_ms: int
    password: bytes


@dataclass(frozen=True, slots=True)
class CloseSessionOp:
    """Closes (or expires) a session: deletes its ephemerals, drops it from the table."""

    session_id: int


@dataclass(frozen=True, slots=True)
class DeleteContainerOp:
    """Proposed by the shell for ``expired_containers_and_ttls``.

    Deletes only if the node is still an empty container, or a childless TTL
    node whose TTL has passed at ``txn.time_ms`` (apply re-checks: the tree
    may have changed since the shell looked).
    """

    path: str


@dataclass(frozen=True, slots=True)
class ErrorOp:
    """A write the shell already knows fails (e.g. decided before apply).

    Consumes its zxid like ZooKeeper's error txn and reports ``code``.
    """

    code: int


@dataclass(frozen=True, slots=True)
class SetConfigOp:
    """Replace the data of /zookeeper/config (the membership, ZooKeeper's format).

    A system transaction: the replica applies it for a committed membership
    change (dynamic reconfiguration), so every replica holds the same config
    node; no ACL check (the leader checked the reconfig request).
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class ReconfigOp:
    """A client's reconfig request (opcode 16) on its way to the leader.

    It never changes the tree itself: the leader validates it against the
    membership and proposes a membership change, or an ``ErrorOp``. Fields as
    ZooKeeper's ReconfigRequest: comma-separated ``server.N=...`` specs to add,
    comma-separated ids to remove, a whole new membership (non-incremental;
    refused here), and the config version the change is based on (-1: any).
    """

    joining: str | None
    leaving: str | None
    new_members: str | None
    from_config: int = -1


Op = (
    CreateOp
    | DeleteOp
    | SetDataOp
    | SetACLOp
    | CheckOp
    | MultiOp
    | CreateSessionOp
    | CloseSessionOp
    | DeleteContainerOp
    | ErrorOp
    | SetConfigOp
    | ReconfigOp
)


@value_record
class Txn:
    """One logged transaction: the proposer stamps zxid, wall time and identities.

    ``identities`` are the session's authenticated ids at proposal time, e.g.
    ``(("ip", "127.0.0.1"), ("digest", "u:hash"))``; ("world", "anyone") is
    implicit, and ("super", "") bypasses every ACL check. ``session_id`` 0 is
    the system (used for container cleanup); every other write must come
    from a session in the table or it fails with SESSION_EXPIRED.
    """

    zxid: int
    time_ms: int
    session_id: int
    identities: tuple[Identity, ...]
    op: Any


class EventType(enum.IntEnum):
    NODE_CREATED = 1
    NODE_DELETED = 2
    NODE_DATA_CHANGED = 3
    NODE_CHILDREN_CHANGED = 4


@value_record
class WatchEvent:
    """A change a watch may fire on. ``path`` of NodeChildrenChanged is the parent."""

    type: int
    path: str
    zxid: int


@dataclass(slots=True)
class ApplyResult:
    """What a transaction did.

    ``err``: an ``Err`` code (0 on success). ``value``: create -> (path, Stat);
    setData / setACL -> Stat; delete / check / createSession -> None;
    closeSession -> list of deleted ephemeral paths; multi -> list of per-op
    ``(err, value)`` (see ``MultiOp``): on failure the failing op carries its
    code, earlier ops OK (clients report them as rolled back), later ones
    RUNTIME_INCONSISTENCY, and the tree is unchanged. For a multi, ``err`` is
    the failing op's code (0 if all succeeded) -- note ZooKeeper's reply
    header for a multi carries 0 even then; the per-op codes carry the error.
    ``events``: watch events to hand to the WatchManager, in order.
    """

    err: int
    value: Any = None
    events: list[WatchEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    timeout_ms: int
    password: bytes


class Rollback(Exception):
    """Raised by an op handler before it changes anything: the op fails with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code
