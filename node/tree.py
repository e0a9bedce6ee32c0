"""The data tree: a deterministic state machine over znodes, sessions and ACLs.

``DataTree.apply(txn)`` is the only way the tree changes. A ``Txn`` carries
everything apply needs (zxid, the proposer's wall time, the session and its
authenticated identities), so applying the same log on any replica, or on
replay after a crash, yields the same tree. No clocks, sockets or randomness
live here; the asyncio shell (``node/server.py``) stamps transactions and
carries out the returned watch events.

Semantics follow Apache ZooKeeper 3.8 (``PrepRequestProcessor`` +
``DataTree``), checked against a real 3.8 server:

* Validation order and error precedence are ZooKeeper's, e.g. for delete:
  BadArguments (path) > NoNode (parent) > NoAuth (DELETE on parent) >
  NoNode (node) > BadVersion > NotEmpty.
* Failed writes are transactions too: ZooKeeper logs an error txn for them and
  its last processed zxid advances. Here the op itself is logged and apply
  reports the error; ``last_zxid`` advances to ``txn.zxid`` either way. Reads
  never consume a zxid.
* ``cversion`` is stored as ZooKeeper stores it (the number of child
  *creations*, which also gives the sequential suffix ``%010d``) and reported
  as ZooKeeper reports it: ``2 * creations - numChildren`` (so a delete
  raises the reported cversion by one, and a fresh root shows -1).
* Containers and TTL nodes report ephemeralOwner 0 to clients, as ZooKeeper
  does; internally they carry ZooKeeper's special owner values.
* The tree also holds the session table (id -> timeout, password): sessions
  are created and closed by logged transactions, so they survive restarts.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Union

from node.errors import Err, ZkError

# --------------------------------------------------------------------------
# Stat, ACLs, permissions
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
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

# Identity schemes whose ids count as "authenticated" for the ``auth`` ACL
# scheme (ZooKeeper: ``ServerAuthenticationProvider.isAuthenticated``; ip is
# not, so a client with only its ip identity gets InvalidACL for ``auth``).
AUTHENTICATED_SCHEMES = frozenset({"digest", "sasl", "x509"})

Identity = tuple[str, str]


def digest_id(user: str, password: str) -> str:
    """The digest-scheme id of ``user:password``: ``user:base64(sha1(user:password))``."""
    raw = hashlib.sha1(f"{user}:{password}".encode("utf-8")).digest()
    return f"{user}:{base64.b64encode(raw).decode('ascii')}"


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
_VALID_FLAGS = frozenset(range(7))

CREATE_KINDS = ("create", "create2", "createContainer", "createTTL")

# ZooKeeper's special ephemeralOwner values (EphemeralType), as signed longs.
CONTAINER_OWNER = -(1 << 63)  # 0x8000000000000000
_TTL_PREFIX = 0xFF00000000000000
MAX_TTL_MS = (1 << 40) - 1  # EphemeralType.TTL.maxValue(): about 12725 days


def ttl_owner(ttl_ms: int) -> int:
    """The internal ephemeralOwner of a TTL node (0xff << 56 | ttl, as a signed long)."""
    return (_TTL_PREFIX | ttl_ms) - (1 << 64)


def owner_kind(owner: int) -> str:
    """'void', 'normal' (a session's ephemeral), 'container' or 'ttl'."""
    if owner == 0:
        return "void"
    if owner == CONTAINER_OWNER:
        return "container"
    if owner < 0 and ((owner + (1 << 64)) & _TTL_PREFIX) == _TTL_PREFIX:
        return "ttl"
    return "normal"


def ttl_of_owner(owner: int) -> int:
    return (owner + (1 << 64)) & MAX_TTL_MS


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class DeleteOp:
    path: str
    version: int = -1


@dataclass(frozen=True, slots=True)
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


Op = Union[CreateOp, DeleteOp, SetDataOp, SetACLOp, CheckOp, MultiOp, CreateSessionOp, CloseSessionOp, DeleteContainerOp, ErrorOp]


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------

# Characters ZooKeeper's PathUtils refuses (Java UTF-16: anything above
# U+FFFF is a surrogate pair and so refused too).
_BAD_CHARS = re.compile("[\x01-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\U0010ffff]")

SPECIAL_PATHS = frozenset({"/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"})


def path_error(path: str) -> str | None:
    """Why ``path`` is not a valid ZooKeeper path (PathUtils.validatePath), or None."""
    if not isinstance(path, str):
        return "path must be a string"
    if not path:
        return "path must not be empty"
    if path[0] != "/":
        return f"path {path!r} must start with /"
    if len(path) == 1:
        return None
    if path[-1] == "/":
        return f"path {path!r} must not end with /"
    if "\0" in path:
        return f"path {path!r} contains a null character"
    if "//" in path:
        return f"path {path!r} has an empty node name (//)"
    for part in path.split("/")[1:]:
        if part in (".", ".."):
            return f"path {path!r} is relative (. and .. are not allowed as names)"
    m = _BAD_CHARS.search(path)
    if m:
        return f"path {path!r} has an invalid character U+{ord(m.group()):04X} at {m.start()}"
    return None


def validate_path(path: str) -> None:
    """Raise ZkError(BAD_ARGUMENTS) saying what is wrong with an invalid path."""
    why = path_error(path)
    if why is not None:
        raise ZkError(Err.BAD_ARGUMENTS, why)


def parent_of(path: str) -> str:
    """The parent path ("/" for top-level nodes and for "/" itself)."""
    i = path.rfind("/")
    return path[:i] if i > 0 else "/"


def _child_path(parent: str, name: str) -> str:
    return parent + name if parent == "/" else f"{parent}/{name}"


# --------------------------------------------------------------------------
# ACL checks
# --------------------------------------------------------------------------

_net_cache: dict[str, Any] = {}


def _ip_network(spec: str):
    """Parse an ip-scheme ACL id ("10.0.0.1" or "10.0.0.0/8"); None if invalid."""
    try:
        return _net_cache[spec]
    except KeyError:
        pass
    net = None
    addr, slash, bits = spec.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
        if slash:
            if not bits.isdigit() or int(bits) > ip.max_prefixlen:
                raise ValueError(bits)
            net = ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False)
        else:
            net = ipaddress.ip_network(addr)
    except ValueError:
        net = None
    if len(_net_cache) < 4096:
        _net_cache[spec] = net
    return net


def _ip_matches(client_ip: str, acl_id: str) -> bool:
    net = _ip_network(acl_id)
    if net is None:
        return False
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return ip.version == net.version and ip in net


def _acl_id_valid(scheme: str, ident: str) -> bool:
    if scheme == "digest":
        parts = ident.split(":")
        while parts and parts[-1] == "":  # Java's String.split drops trailing empties
            parts.pop()
        return len(parts) == 2
    if scheme == "ip":
        return _ip_network(ident) is not None
    return False


def check_acl(acl: Iterable[ACL], perm: int, identities: Iterable[Identity]) -> bool:
    """ZooKeeper's checkACL: may a holder of ``identities`` do ``perm`` here?

    An empty ACL allows everything; ("super", ...) allows everything;
    world:anyone matches all; digest ids match by equality; ip ids match the
    client's address against the entry's address or CIDR block.
    """
    acl = tuple(acl)
    if not acl:
        return True
    idents = tuple(identities)
    for scheme, _ in idents:
        if scheme == "super":
            return True
    for entry in acl:
        if not entry.perms & perm:
            continue
        if entry.scheme == "world" and entry.id == "anyone":
            return True
        for scheme, ident in idents:
            if scheme != entry.scheme:
                continue
            if scheme == "ip":
                if _ip_matches(ident, entry.id):
                    return True
            elif ident == entry.id:
                return True
    return False


def fixup_acl(path: str, acl: Iterable[ACL], identities: Iterable[Identity]) -> tuple[ACL, ...]:
    """Validate a client's ACL list and expand ``auth`` (ZooKeeper's fixupACL).

    Raises ZkError(INVALID_ACL) for an empty list, an unknown scheme, a
    malformed digest/ip id, world with an id other than "anyone", or ``auth``
    when the creator has no authenticated (digest) identity.
    """
    uniq: list[ACL] = []
    for entry in acl:
        if entry not in uniq:
            uniq.append(entry)
    if not uniq:
        raise ZkError(Err.INVALID_ACL, f"empty ACL for {path}: give at least one entry, e.g. world:anyone")
    out: list[ACL] = []
    for entry in uniq:
        if entry.scheme == "world" and entry.id == "anyone":
            out.append(entry)
        elif entry.scheme == "auth":
            found = False
            for scheme, ident in identities:
                if scheme in AUTHENTICATED_SCHEMES:
                    found = True
                    out.append(ACL(entry.perms, scheme, ident))
            if not found:
                raise ZkError(Err.INVALID_ACL, f"ACL 'auth' for {path} needs an authenticated (digest) identity; add auth first")
        elif _acl_id_valid(entry.scheme, entry.id):
            out.append(entry)
        else:
            raise ZkError(
                Err.INVALID_ACL,
                f"invalid ACL {entry.scheme}:{entry.id} for {path}: schemes are world:anyone, auth, digest:user:hash, ip:addr[/bits]",
            )
    return tuple(out)


# --------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------


class _Node:
    """A znode. ``cversion`` counts child creations (ZooKeeper's internal value)."""

    __slots__ = ("data", "acl", "czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion", "owner", "pzxid", "children")

    def __init__(self, data: bytes | None, acl: tuple[ACL, ...], zxid: int, time_ms: int, owner: int) -> None:
        self.data = data
        self.acl = acl
        self.czxid = zxid
        self.mzxid = zxid
        self.ctime = time_ms
        self.mtime = time_ms
        self.version = 0
        self.cversion = 0
        self.aversion = 0
        self.owner = owner
        self.pzxid = zxid
        self.children: set[str] = set()

    def stat(self) -> Stat:
        n = len(self.children)
        owner = self.owner
        if owner < 0:  # container / TTL: clients see 0 (getClientEphemeralOwner)
            owner = 0
        size = 0 if self.data is None else len(self.data)
        return Stat(self.czxid, self.mzxid, self.ctime, self.mtime, self.version, 2 * self.cversion - n, self.aversion, owner, size, n, self.pzxid)


class _Rollback(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class DataTree:
    """The znode tree, the session table and the ephemeral/container indexes.

    ``unsafe_multi_partial`` is the TEST-ONLY ``multi-partial`` fault
    (``node.faults``): when set, a multi whose later op fails keeps the
    effects of its earlier ops. Never set it outside a test.
    """

    unsafe_multi_partial = False

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.sessions: dict[int, SessionInfo] = {}
        self.last_zxid = 0
        self._ephemerals: dict[int, set[str]] = {}
        self._containers: set[str] = set()
        self._ttls: set[str] = set()
        self._acl_cache: dict[tuple[ACL, ...], tuple[ACL, ...]] = {}
        self._undo: list[Callable[[], None]] | None = None
        self._install_system_nodes()

    def _install_system_nodes(self) -> None:
        # As a fresh ZooKeeper 3.8: /, /zookeeper, /zookeeper/quota,
        # /zookeeper/config (READ-only, aversion -1), all with zero stats.
        root = _Node(b"", self._intern(OPEN_ACL_UNSAFE), 0, 0, 0)
        zk = _Node(b"", self._intern(OPEN_ACL_UNSAFE), 0, 0, 0)
        quota = _Node(b"", self._intern(OPEN_ACL_UNSAFE), 0, 0, 0)
        config = _Node(b"", self._intern(READ_ACL_UNSAFE), 0, 0, 0)
        config.aversion = -1
        root.children.add("zookeeper")
        zk.children.update(("quota", "config"))
        self.nodes.update({"/": root, "/zookeeper": zk, "/zookeeper/quota": quota, "/zookeeper/config": config})

    def _intern(self, acl: tuple[ACL, ...]) -> tuple[ACL, ...]:
        return self._acl_cache.setdefault(acl, acl)

    # ------------------------------------------------------------------ reads

    @property
    def node_count(self) -> int:
        """Number of znodes, root included (a fresh tree has 4)."""
        return len(self.nodes)

    @property
    def zk_node_count(self) -> int:
        """The node count ZooKeeper reports in srvr/mntr (it counts root twice)."""
        return len(self.nodes) + 1

    def _readable(self, path: str, perm: int, identities: Iterable[Identity]) -> _Node:
        if "\0" in path:
            raise ZkError(Err.BAD_ARGUMENTS, f"path {path!r} contains a null character")
        node = self.nodes.get(path)
        if node is None:
            raise ZkError(Err.NO_NODE, f"no node {path}")
        if not check_acl(node.acl, perm, identities):
            raise ZkError(Err.NO_AUTH, f"not authorized for {Perm(perm).name} on {path}")
        return node

    def exists(self, path: str) -> Stat | None:
        """The node's Stat, or None. No ACL check (as ZooKeeper)."""
        if "\0" in path:
            raise ZkError(Err.BAD_ARGUMENTS, f"path {path!r} contains a null character")
        node = self.nodes.get(path)
        return None if node is None else node.stat()

    def get_data(self, path: str, identities: Iterable[Identity] = ()) -> tuple[bytes | None, Stat]:
        """Data (None if created/set with null data) and Stat; raises NO_NODE, then NO_AUTH (needs READ)."""
        node = self._readable(path, Perm.READ, identities)
        return node.data, node.stat()

    def get_children(self, path: str, identities: Iterable[Identity] = ()) -> tuple[list[str], Stat]:
        """Sorted child names and the node's Stat; NO_NODE, then NO_AUTH (READ)."""
        node = self._readable(path, Perm.READ, identities)
        return sorted(node.children), node.stat()

    def get_acl(self, path: str, identities: Iterable[Identity] | None = None) -> tuple[list[ACL], Stat]:
        """The ACL and Stat.

        With ``identities`` (a client request) this is ZooKeeper 3.8's
        getACL: NO_NODE, then NO_AUTH unless READ or ADMIN, and digest
        hashes are masked as ``user:x`` for a caller without ADMIN. With
        ``None`` (internal/admin use) no check and no masking.
        """
        if identities is None:
            node = self.nodes.get(path)
            if node is None:
                raise ZkError(Err.NO_NODE, f"no node {path}")
            return list(node.acl), node.stat()
        idents = tuple(identities)
        node = self._readable(path, Perm.READ | Perm.ADMIN, idents)
        if check_acl(node.acl, Perm.ADMIN, idents):
            return list(node.acl), node.stat()
        masked = [ACL(a.perms, a.scheme, a.id.split(":", 1)[0] + ":x") if a.scheme == "digest" else a for a in node.acl]
        return masked, node.stat()

    def get_ephemerals(self, session_id: int | None, prefix: str = "/") -> list[str]:
        """Sorted ephemeral paths of one session (None: all) starting with ``prefix``."""
        if session_id is None:
            paths: Iterable[str] = (p for s in self._ephemerals.values() for p in s)
        else:
            paths = self._ephemerals.get(session_id, ())
        return sorted(p for p in paths if p.startswith(prefix))

    @property
    def ephemerals_by_session(self) -> dict[int, list[str]]:
        """session id -> sorted ephemeral paths (a copy; for ``dump``)."""
        return {sid: sorted(paths) for sid, paths in self._ephemerals.items() if paths}

    def count_all_children(self, path: str, identities: Iterable[Identity] | None = None) -> int:
        """Number of descendants (getAllChildrenNumber); READ checked if identities given."""
        if identities is None:
            if path not in self.nodes:
                raise ZkError(Err.NO_NODE, f"no node {path}")
        else:
            self._readable(path, Perm.READ, identities)
        if path == "/":
            return len(self.nodes) - 1
        count = 0
        stack = [path]
        while stack:
            p = stack.pop()
            for name in self.nodes[p].children:
                count += 1
                stack.append(f"{p}/{name}")
        return count

    def expired_containers_and_ttls(self, now_ms: int) -> list[str]:
        """Paths the shell should propose ``DeleteContainerOp`` for (ContainerManager).

        Empty containers that have had a child (never-used ones stay, as
        ZooKeeper's default), and childless TTL nodes not modified for
        longer than their TTL.
        """
        out = []
        for p in self._containers:
            n = self.nodes[p]
            if not n.children and n.cversion > 0:
                out.append(p)
        for p in self._ttls:
            n = self.nodes[p]
            if not n.children and now_ms - n.mtime > ttl_of_owner(n.owner):
                out.append(p)
        return sorted(out)

    # ----------------------------------------------------------------- writes

    def apply(self, txn: Txn) -> ApplyResult:
        """Apply one transaction; never raises for client errors (they are results)."""
        op = txn.op
        if txn.zxid > self.last_zxid:
            self.last_zxid = txn.zxid
        handler = _HANDLERS.get(type(op))
        if handler is None:
            return ApplyResult(Err.BAD_ARGUMENTS, f"unknown op {type(op).__name__}")
        if type(op) in _CLIENT_OPS and txn.session_id != 0 and txn.session_id not in self.sessions:
            if type(op) is MultiOp:
                return self._multi_failure(op, 0, Err.SESSION_EXPIRED)
            return ApplyResult(Err.SESSION_EXPIRED)
        events: list[WatchEvent] = []
        try:
            value = handler(self, txn, op, events)
        except _Rollback as rb:
            return ApplyResult(rb.code)
        if type(op) is MultiOp:
            return value
        return ApplyResult(Err.OK, value, events)

    # Each _op_* validates in ZooKeeper's order, raising _Rollback(code)
    # before touching anything, then mutates (recording undo steps while a
    # multi is in progress).

    def _op_create(self, txn: Txn, op: CreateOp, events: list[WatchEvent]) -> tuple[str, Stat]:
        flags = op.flags
        if op.kind == "createContainer":
            flags = CONTAINER
        if flags not in _VALID_FLAGS or op.kind not in CREATE_KINDS:
            raise _Rollback(Err.BAD_ARGUMENTS)
        is_ttl = flags in (PERSISTENT_WITH_TTL, PERSISTENT_SEQUENTIAL_WITH_TTL)
        if is_ttl:
            if not 0 < op.ttl <= MAX_TTL_MS:
                raise _Rollback(Err.BAD_ARGUMENTS)
        elif op.ttl >= 0:
            raise _Rollback(Err.BAD_ARGUMENTS)
        ephemeral = flags in (EPHEMERAL, EPHEMERAL_SEQUENTIAL)
        if ephemeral and txn.session_id not in self.sessions:
            raise _Rollback(Err.SESSION_EXPIRED)
        path = op.path
        if not isinstance(path, str) or "/" not in path or "\0" in path:
            raise _Rollback(Err.BAD_ARGUMENTS)
        try:
            acl = fixup_acl(path, op.acl, txn.identities)
        except ZkError as e:
            raise _Rollback(e.code) from None
        parent_path = parent_of(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            raise _Rollback(Err.NO_NODE)
        if not check_acl(parent.acl, Perm.CREATE, txn.identities):
            raise _Rollback(Err.NO_AUTH)
        if flags in (PERSISTENT_SEQUENTIAL, EPHEMERAL_SEQUENTIAL, PERSISTENT_SEQUENTIAL_WITH_TTL):
            path = f"{path}{parent.cversion:010d}"
        if path_error(path) is not None:
            raise _Rollback(Err.BAD_ARGUMENTS)
        if path in self.nodes:
            raise _Rollback(Err.NODE_EXISTS)
        if owner_kind(parent.owner) == "normal":
            raise _Rollback(Err.NO_CHILDREN_FOR_EPHEMERALS)
        if flags == CONTAINER:
            owner = CONTAINER_OWNER
        elif is_ttl:
            owner = ttl_owner(op.ttl)
        elif ephemeral:
            owner = txn.session_id
        else:
            owner = 0
        zxid = txn.zxid
        node = _Node(op.data, self._intern(acl), zxid, txn.time_ms, owner)
        old_cv, old_pz = parent.cversion, parent.pzxid
        name = path[len(parent_path) + (0 if parent_path == "/" else 1):]
        self.nodes[path] = node
        parent.children.add(name)
        parent.cversion += 1
        parent.pzxid = zxid
        if owner:
            self._index_owner(path, owner, add=True)
        if self._undo is not None:

            def undo() -> None:
                del self.nodes[path]
                parent.children.discard(name)
                parent.cversion, parent.pzxid = old_cv, old_pz
                if owner:
                    self._index_owner(path, owner, add=False)

            self._undo.append(undo)
        events.append(WatchEvent(EventType.NODE_CREATED, path, zxid))
        events.append(WatchEvent(EventType.NODE_CHILDREN_CHANGED, parent_path, zxid))
        return path, node.stat()

    def _index_owner(self, path: str, owner: int, add: bool) -> None:
        kind = owner_kind(owner)
        if kind == "normal":
            if add:
                self._ephemerals.setdefault(owner, set()).add(path)
            else:
                s = self._ephemerals.get(owner)
                if s is not None:
                    s.discard(path)
                    if not s:
                        del self._ephemerals[owner]
        else:
            target = self._containers if kind == "container" else self._ttls
            if add:
                target.add(path)
            else:
                target.discard(path)

    def _remove_node(self, path: str, zxid: int, events: list[WatchEvent]) -> None:
        """Unlink a (childless) node; parent's cversion rises via numChildren, pzxid = zxid."""
        node = self.nodes.pop(path)
        parent_path = parent_of(path)
        parent = self.nodes[parent_path]
        name = path[len(parent_path) + (0 if parent_path == "/" else 1):]
        old_pz = parent.pzxid
        parent.children.discard(name)
        if zxid > parent.pzxid:
            parent.pzxid = zxid
        if node.owner:
            self._index_owner(path, node.owner, add=False)
        if self._undo is not None:

            def undo() -> None:
                self.nodes[path] = node
                parent.children.add(name)
                parent.pzxid = old_pz
                if node.owner:
                    self._index_owner(path, node.owner, add=True)

            self._undo.append(undo)
        events.append(WatchEvent(EventType.NODE_DELETED, path, zxid))
        events.append(WatchEvent(EventType.NODE_CHILDREN_CHANGED, parent_path, zxid))

    def _op_delete(self, txn: Txn, op: DeleteOp, events: list[WatchEvent]) -> None:
        path = op.path
        if not isinstance(path, str) or "/" not in path or "\0" in path or path in SPECIAL_PATHS:
            raise _Rollback(Err.BAD_ARGUMENTS)
        parent = self.nodes.get(parent_of(path))
        if parent is None:
            raise _Rollback(Err.NO_NODE)
        if not check_acl(parent.acl, Perm.DELETE, txn.identities):
            raise _Rollback(Err.NO_AUTH)
        node = self.nodes.get(path)
        if node is None:
            raise _Rollback(Err.NO_NODE)
        if op.version != -1 and op.version != node.version:
            raise _Rollback(Err.BAD_VERSION)
        if node.children:
            raise _Rollback(Err.NOT_EMPTY)
        self._remove_node(path, txn.zxid, events)
        return None

    def _writable(self, path: str, perm: int, identities: Iterable[Identity]) -> _Node:
        if path_error(path) is not None:
            raise _Rollback(Err.BAD_ARGUMENTS)
        node = self.nodes.get(path)
        if node is None:
            raise _Rollback(Err.NO_NODE)
        if not check_acl(node.acl, perm, identities):
            raise _Rollback(Err.NO_AUTH)
        return node

    def _op_set_data(self, txn: Txn, op: SetDataOp, events: list[WatchEvent]) -> Stat:
        node = self._writable(op.path, Perm.WRITE, txn.identities)
        if op.version != -1 and op.version != node.version:
            raise _Rollback(Err.BAD_VERSION)
        if self._undo is not None:
            saved = (node.data, node.mzxid, node.mtime, node.version)

            def undo() -> None:
                node.data, node.mzxid, node.mtime, node.version = saved

            self._undo.append(undo)
        node.data = op.data
        node.mzxid = txn.zxid
        node.mtime = txn.time_ms
        node.version += 1
        events.append(WatchEvent(EventType.NODE_DATA_CHANGED, op.path, txn.zxid))
        return node.stat()

    def _op_set_acl(self, txn: Txn, op: SetACLOp, events: list[WatchEvent]) -> Stat:
        if path_error(op.path) is not None:
            raise _Rollback(Err.BAD_ARGUMENTS)
        try:
            acl = fixup_acl(op.path, op.acl, txn.identities)
        except ZkError as e:
            raise _Rollback(e.code) from None
        node = self._writable(op.path, Perm.ADMIN, txn.identities)
        if op.version != -1 and op.version != node.aversion:
            raise _Rollback(Err.BAD_VERSION)
        node.acl = self._intern(acl)
        node.aversion += 1
        return node.stat()

    def _op_check(self, txn: Txn, op: CheckOp, events: list[WatchEvent]) -> None:
        node = self._writable(op.path, Perm.READ, txn.identities)
        if op.version != -1 and op.version != node.version:
            raise _Rollback(Err.BAD_VERSION)
        return None

    def _multi_failure(self, op: MultiOp, index: int, code: int) -> ApplyResult:
        results: list[tuple[int, Any]] = []
        for i in range(len(op.ops)):
            if i < index:
                results.append((Err.OK, None))
            elif i == index:
                results.append((code, None))
            else:
                results.append((Err.RUNTIME_INCONSISTENCY, None))
        return ApplyResult(code, results, [])

    def _op_multi(self, txn: Txn, op: MultiOp, events: list[WatchEvent]) -> ApplyResult:
        self._undo = []
        results: list[tuple[int, Any]] = []
        try:
            for i, sub in enumerate(op.ops):
                handler = _HANDLERS.get(type(sub)) if type(sub) in _MULTI_OPS else None
                if handler is None:
                    code = Err.BAD_ARGUMENTS
                else:
                    try:
                        results.append((Err.OK, handler(self, txn, sub, events)))
                        continue
                    except _Rollback as rb:
                        code = rb.code
                failure = self._multi_failure(op, i, code)
                if self.unsafe_multi_partial:  # TEST-ONLY FAULT: no rollback
                    return ApplyResult(code, failure.value, events)
                for step in reversed(self._undo):
                    step()
                return failure
        finally:
            self._undo = None
        return ApplyResult(Err.OK, results, events)

    def _op_create_session(self, txn: Txn, op: CreateSessionOp, events: list[WatchEvent]) -> None:
        self.sessions[op.session_id] = SessionInfo(op.timeout_ms, bytes(op.password))
        return None

    def _op_close_session(self, txn: Txn, op: CloseSessionOp, events: list[WatchEvent]) -> list[str]:
        paths = sorted(self._ephemerals.get(op.session_id, ()))
        for p in paths:
            if p in self.nodes and not self.nodes[p].children:
                self._remove_node(p, txn.zxid, events)
        self.sessions.pop(op.session_id, None)
        self._ephemerals.pop(op.session_id, None)
        return paths

    def _op_delete_container(self, txn: Txn, op: DeleteContainerOp, events: list[WatchEvent]) -> None:
        path = op.path
        if not isinstance(path, str) or path in SPECIAL_PATHS or "/" not in path:
            raise _Rollback(Err.BAD_ARGUMENTS)
        if parent_of(path) not in self.nodes:
            raise _Rollback(Err.NO_NODE)
        node = self.nodes.get(path)
        if node is None:
            raise _Rollback(Err.NO_NODE)
        if node.children:
            raise _Rollback(Err.NOT_EMPTY)
        kind = owner_kind(node.owner)
        if kind == "container":
            pass
        elif kind == "ttl":
            if not txn.time_ms - node.mtime > ttl_of_owner(node.owner):
                raise _Rollback(Err.BAD_VERSION)
        else:
            raise _Rollback(Err.BAD_VERSION)
        self._remove_node(path, txn.zxid, events)
        return None

    def _op_error(self, txn: Txn, op: ErrorOp, events: list[WatchEvent]) -> None:
        raise _Rollback(op.code)

    # --------------------------------------------------------------- snapshot

    def serialize(self) -> bytes:
        """The whole tree + session table as bytes (parents before children)."""
        w = _Writer()
        w.raw(_SNAP_MAGIC)
        w.q(self.last_zxid)
        w.u32(len(self.sessions))
        for sid, info in sorted(self.sessions.items()):
            w.q(sid)
            w.i32(info.timeout_ms)
            w.blob(info.password)
        w.u32(len(self.nodes))
        stack = ["/"]
        while stack:
            path = stack.pop()
            n = self.nodes[path]
            w.text(path)
            w.data(n.data)
            w.acl(n.acl)
            w.raw(_NODE_FIELDS.pack(n.czxid, n.mzxid, n.ctime, n.mtime, n.version, n.cversion, n.aversion, n.owner, n.pzxid))
            for name in sorted(n.children, reverse=True):
                stack.append(_child_path(path, name))
        return w.getvalue()

    @classmethod
    def deserialize(cls, blob: bytes) -> "DataTree":
        """Rebuild a tree from ``serialize()``; raises ValueError if malformed."""
        r = _Reader(blob)
        try:
            if r.raw(len(_SNAP_MAGIC)) != _SNAP_MAGIC:
                raise ValueError("not a squall tree snapshot (bad magic)")
            tree = cls.__new__(cls)
            tree.nodes = {}
            tree.sessions = {}
            tree._ephemerals = {}
            tree._containers = set()
            tree._ttls = set()
            tree._acl_cache = {}
            tree._undo = None
            tree.last_zxid = r.q()
            for _ in range(r.u32()):
                sid = r.q()
                tree.sessions[sid] = SessionInfo(r.i32(), r.blob())
            for _ in range(r.u32()):
                path = r.text()
                data = r.data()
                acl = tree._intern(r.acl())
                fields = _NODE_FIELDS.unpack(r.raw(_NODE_FIELDS.size))
                node = _Node(data, acl, 0, 0, 0)
                (node.czxid, node.mzxid, node.ctime, node.mtime, node.version, node.cversion, node.aversion, node.owner, node.pzxid) = fields
                if path != "/":
                    pp = parent_of(path)
                    parent = tree.nodes.get(pp)
                    if parent is None:
                        raise ValueError(f"snapshot lists {path} before its parent")
                    parent.children.add(path[len(pp) + (0 if pp == "/" else 1):])
                tree.nodes[path] = node
                if node.owner:
                    tree._index_owner(path, node.owner, add=True)
            if r.pos != len(blob):
                raise ValueError(f"{len(blob) - r.pos} trailing bytes after the snapshot")
            if "/" not in tree.nodes:
                raise ValueError("snapshot has no root")
        except (struct.error, UnicodeDecodeError, IndexError) as e:
            raise ValueError(f"malformed tree snapshot: {e}") from None
        return tree

    def digest(self) -> tuple:
        """A comparable summary of the whole state (for tests and replica checks)."""
        return (
            self.last_zxid,
            tuple(sorted((sid, s.timeout_ms, s.password) for sid, s in self.sessions.items())),
            tuple(sorted((p, n.data, n.acl, n.czxid, n.mzxid, n.ctime, n.mtime, n.version, n.cversion, n.aversion, n.owner, n.pzxid, tuple(sorted(n.children))) for p, n in self.nodes.items())),
        )


_HANDLERS: dict[type, Callable[..., Any]] = {
    CreateOp: DataTree._op_create,
    DeleteOp: DataTree._op_delete,
    SetDataOp: DataTree._op_set_data,
    SetACLOp: DataTree._op_set_acl,
    CheckOp: DataTree._op_check,
    MultiOp: DataTree._op_multi,
    CreateSessionOp: DataTree._op_create_session,
    CloseSessionOp: DataTree._op_close_session,
    DeleteContainerOp: DataTree._op_delete_container,
    ErrorOp: DataTree._op_error,
}
_CLIENT_OPS = frozenset({CreateOp, DeleteOp, SetDataOp, SetACLOp, CheckOp, MultiOp})
_MULTI_OPS = frozenset({CreateOp, DeleteOp, SetDataOp, CheckOp})


# --------------------------------------------------------------------------
# Binary encoding of transactions (the log's hot path) and snapshots
# --------------------------------------------------------------------------

_SNAP_MAGIC = b"SQTREE1\n"
_NODE_FIELDS = struct.Struct(">qqqqiiiqq")
_TXN_HEAD = struct.Struct(">qqqB")
_Q = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_QI = struct.Struct(">qi")

_T_CREATE, _T_DELETE, _T_SET_DATA, _T_SET_ACL, _T_CHECK, _T_MULTI = 1, 2, 3, 4, 5, 6
_T_CREATE_SESSION, _T_CLOSE_SESSION, _T_DELETE_CONTAINER, _T_ERROR = 7, 8, 9, 10
_KIND_CODE = {k: i for i, k in enumerate(CREATE_KINDS)}


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def raw(self, b: bytes) -> None:
        self.parts.append(b)

    def q(self, v: int) -> None:
        self.parts.append(_Q.pack(v))

    def i32(self, v: int) -> None:
        self.parts.append(_I32.pack(v))

    def u32(self, v: int) -> None:
        self.parts.append(_U32.pack(v))

    def blob(self, b: bytes) -> None:
        self.parts.append(_U32.pack(len(b)))
        self.parts.append(b)

    def text(self, s: str) -> None:
        self.blob(s.encode("utf-8", "surrogatepass"))

    def data(self, b: bytes | None) -> None:
        """Znode data: i32 length, -1 for null (ZooKeeper keeps null apart from empty)."""
        if b is None:
            self.parts.append(_I32.pack(-1))
        else:
            self.parts.append(_I32.pack(len(b)))
            self.parts.append(b)

    def acl(self, acl: tuple[ACL, ...]) -> None:
        self.u32(len(acl))
        for a in acl:
            self.i32(a.perms)
            self.text(a.scheme)
            self.text(a.id)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def raw(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise ValueError(f"truncated: wanted {n} bytes at offset {self.pos}, have {len(self.buf) - self.pos}")
        b = bytes(self.buf[self.pos:end])
        self.pos = end
        return b

    def q(self) -> int:
        (v,) = _Q.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def i32(self) -> int:
        (v,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u32(self) -> int:
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def blob(self) -> bytes:
        return self.raw(self.u32())

    def text(self) -> str:
        return self.blob().decode("utf-8", "surrogatepass")

    def data(self) -> bytes | None:
        n = self.i32()
        if n < -1:
            raise ValueError(f"negative data length {n}")
        return None if n == -1 else self.raw(n)

    def acl(self) -> tuple[ACL, ...]:
        return tuple(ACL(self.i32(), self.text(), self.text()) for _ in range(self.u32()))


def _encode_op(w: _Writer, op: Any) -> None:
    t = type(op)
    if t is SetDataOp:
        w.raw(b"\x03")
        w.text(op.path)
        w.data(op.data)
        w.i32(op.version)
    elif t is CreateOp:
        w.raw(b"\x01")
        w.text(op.path)
        w.data(op.data)
        w.acl(op.acl)
        w.i32(op.flags)
        w.q(op.ttl)
        w.raw(bytes((_KIND_CODE.get(op.kind, 255),)))
    elif t is DeleteOp:
        w.raw(b"\x02")
        w.text(op.path)
        w.i32(op.version)
    elif t is SetACLOp:
        w.raw(b"\x04")
        w.text(op.path)
        w.acl(op.acl)
        w.i32(op.version)
    elif t is CheckOp:
        w.raw(b"\x05")
        w.text(op.path)
        w.i32(op.version)
    elif t is MultiOp:
        w.raw(b"\x06")
        w.u32(len(op.ops))
        for sub in op.ops:
            _encode_op(w, sub)
    elif t is CreateSessionOp:
        w.raw(b"\x07")
        w.raw(_QI.pack(op.session_id, op.timeout_ms))
        w.blob(op.password)
    elif t is CloseSessionOp:
        w.raw(b"\x08")
        w.q(op.session_id)
    elif t is DeleteContainerOp:
        w.raw(b"\x09")
        w.text(op.path)
    elif t is ErrorOp:
        w.raw(b"\x0a")
        w.i32(op.code)
    else:
        raise TypeError(f"cannot encode {t.__name__}: not a tree op")


def _decode_op(r: _Reader) -> Any:
    tag = r.raw(1)[0]
    if tag == _T_SET_DATA:
        return SetDataOp(r.text(), r.data(), r.i32())
    if tag == _T_CREATE:
        path, data, acl, flags, ttl = r.text(), r.data(), r.acl(), r.i32(), r.q()
        kind_code = r.raw(1)[0]
        if kind_code >= len(CREATE_KINDS):
            raise ValueError(f"bad create kind {kind_code}")
        return CreateOp(path, data, acl, flags, ttl, CREATE_KINDS[kind_code])
    if tag == _T_DELETE:
        return DeleteOp(r.text(), r.i32())
    if tag == _T_SET_ACL:
        return SetACLOp(r.text(), r.acl(), r.i32())
    if tag == _T_CHECK:
        return CheckOp(r.text(), r.i32())
    if tag == _T_MULTI:
        return MultiOp(tuple(_decode_op(r) for _ in range(r.u32())))
    if tag == _T_CREATE_SESSION:
        sid, timeout = _QI.unpack(r.raw(12))
        return CreateSessionOp(sid, timeout, r.blob())
    if tag == _T_CLOSE_SESSION:
        return CloseSessionOp(r.q())
    if tag == _T_DELETE_CONTAINER:
        return DeleteContainerOp(r.text())
    if tag == _T_ERROR:
        return ErrorOp(r.i32())
    raise ValueError(f"unknown op tag {tag}")


def encode_txn(txn: Txn) -> bytes:
    """Compact binary form of a Txn (the WAL record payload)."""
    w = _Writer()
    w.raw(_TXN_HEAD.pack(txn.zxid, txn.time_ms, txn.session_id, len(txn.identities)))
    for scheme, ident in txn.identities:
        w.text(scheme)
        w.text(ident)
    _encode_op(w, txn.op)
    return w.getvalue()


def decode_txn(blob: bytes) -> Txn:
    """Inverse of ``encode_txn``; raises ValueError for malformed input."""
    try:
        zxid, time_ms, sid, n = _TXN_HEAD.unpack_from(blob, 0)
        r = _Reader(blob)
        r.pos = _TXN_HEAD.size
        idents = tuple((r.text(), r.text()) for _ in range(n))
        op = _decode_op(r)
    except (struct.error, UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"malformed txn record: {e}") from None
    if r.pos != len(blob):
        raise ValueError(f"malformed txn record: {len(blob) - r.pos} trailing bytes")
    return Txn(zxid, time_ms, sid, idents, op)


__all__ = [
    "ACL", "ApplyResult", "AUTHENTICATED_SCHEMES", "CheckOp", "CloseSessionOp", "CONTAINER_OWNER", "CreateOp",
    "CreateSessionOp", "CREATOR_ALL_ACL", "DataTree", "DeleteContainerOp", "DeleteOp", "ErrorOp", "EventType",
    "MAX_TTL_MS", "MultiOp", "OPEN_ACL_UNSAFE", "Perm", "READ_ACL_UNSAFE", "SessionInfo", "SetACLOp", "SetDataOp",
    "SPECIAL_PATHS", "Stat", "Txn", "WatchEvent", "check_acl", "decode_txn", "digest_id", "encode_txn", "fixup_acl",
    "owner_kind", "parent_of", "path_error", "validate_path",
]
