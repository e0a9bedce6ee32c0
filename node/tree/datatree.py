"""The data tree: znodes, the session table and their indexes, changed only by ``DataTree.apply``.

See ``node.tree`` for the semantics; the ACL checks, multi, quotas,
containers/TTL and the binary forms live in the sibling modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from node.errors import Err, ZkError
from node.tree import codec, containers, multi, quota
from node.tree.acl import check_acl, fixup_acl
from node.tree.containers import CONTAINER_OWNER, MAX_TTL_MS, owner_kind, ttl_owner
from node.tree.paths import SPECIAL_PATHS, child_path, parent_of, path_error
from node.tree.records import (
    ACL,
    CONTAINER,
    CREATE_KINDS,
    EPHEMERAL,
    EPHEMERAL_SEQUENTIAL,
    OPEN_ACL_UNSAFE,
    PERSISTENT_SEQUENTIAL,
    PERSISTENT_SEQUENTIAL_WITH_TTL,
    PERSISTENT_WITH_TTL,
    READ_ACL_UNSAFE,
    VALID_FLAGS,
    ApplyResult,
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DeleteContainerOp,
    DeleteOp,
    ErrorOp,
    EventType,
    Identity,
    MultiOp,
    Perm,
    ReconfigOp,
    Rollback,
    SessionInfo,
    SetACLOp,
    SetConfigOp,
    SetDataOp,
    Stat,
    Txn,
    WatchEvent,
)

CONFIG_PATH = "/zookeeper/config"


class Znode:
    """A znode. ``cversion`` counts child creations (ZooKeeper's internal value)."""

    __slots__ = (
        "data",
        "acl",
        "czxid",
        "mzxid",
        "ctime",
        "mtime",
        "version",
        "cversion",
        "aversion",
        "owner",
        "pzxid",
        "children",
    )

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
        return Stat(
            self.czxid,
            self.mzxid,
            self.ctime,
            self.mtime,
            self.version,
            2 * self.cversion - n,
            self.aversion,
            owner,
            size,
            n,
            self.pzxid,
        )


class DataTree:
    """The znode tree, the session table, the ephemeral/container indexes and the quota roots.

    ``enforce_quota`` is ZooKeeper's ``zookeeper.enforceQuota`` (hard quota
    limits refuse writes with QuotaExceeded); every member of an ensemble must
    set it alike, since it changes what ``apply`` computes.
    ``unsafe_multi_partial`` is the TEST-ONLY ``multi-partial`` fault
    (``node.faults``): when set, a multi whose later op fails keeps the
    effects of its earlier ops. ``unsafe_sequence_from_child_count`` is the
    TEST-ONLY ``sequence-from-child-count`` fault: a sequential name takes the
    parent's child count instead of its counter. Never set either outside a test.
    """

    unsafe_multi_partial = False
    unsafe_sequence_from_child_count = False
    enforce_quota = False

    def __init__(self) -> None:
        self._reset()
        self._install_system_nodes()

    def _reset(self) -> None:
        self.nodes: dict[str, Znode] = {}
        self.sessions: dict[int, SessionInfo] = {}
        self.last_zxid = 0
        self._ephemerals: dict[int, set[str]] = {}
        self._containers: set[str] = set()
        self._ttls: set[str] = set()
        self._acl_cache: dict[tuple[ACL, ...], tuple[ACL, ...]] = {}
        self._undo: list[Callable[[], None]] | None = None
        self.quotas = quota.QuotaIndex()

    def _install_system_nodes(self) -> None:
        # As a fresh ZooKeeper 3.8: /, /zookeeper, /zookeeper/quota,
        # /zookeeper/config (READ-only, aversion -1), all with zero stats.
        root = Znode(b"", self._intern(OPEN_ACL_UNSAFE), 0, 0, 0)
        zk = Znode(b"", self._intern(OPEN_ACL_UNSAFE), 0, 0, 0)
        quotas = Znode(b"", self._intern(OPEN_ACL_UNSAFE), 0, 0, 0)
        config = Znode(b"", self._intern(READ_ACL_UNSAFE), 0, 0, 0)
        config.aversion = -1
        root.children.add("zookeeper")
        zk.children.update(("quota", "config"))
        self.nodes.update({"/": root, "/zookeeper": zk, "/zookeeper/quota": quotas, CONFIG_PATH: config})

    @property
    def config_data(self) -> bytes:
        """The data of /zookeeper/config (the membership; empty when none was set)."""
        return self.nodes[CONFIG_PATH].data or b""

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

    def _readable(self, path: str, perm: int, identities: Iterable[Identity]) -> Znode:
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
        """Paths the leader should propose ``DeleteContainerOp`` for (see ``node.tree.containers``)."""
        return containers.expired(self, now_ms)

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
                return multi.multi_failure(op, 0, Err.SESSION_EXPIRED)
            return ApplyResult(Err.SESSION_EXPIRED)
        events: list[WatchEvent] = []
        try:
            value = handler(self, txn, op, events)
        except Rollback as rb:
            return ApplyResult(rb.code)
        if type(op) is MultiOp:
            return value
        return ApplyResult(Err.OK, value, events)

    # Each _op_* validates in ZooKeeper's order, raising Rollback(code)
    # before touching anything, then mutates (recording undo steps while a
    # multi is in progress).

    def _op_create(self, txn: Txn, op: CreateOp, events: list[WatchEvent]) -> tuple[str, Stat]:
        flags = op.flags
        if op.kind == "createContainer":
            flags = CONTAINER
        if flags not in VALID_FLAGS or op.kind not in CREATE_KINDS:
            raise Rollback(Err.BAD_ARGUMENTS)
        is_ttl = flags in (PERSISTENT_WITH_TTL, PERSISTENT_SEQUENTIAL_WITH_TTL)
        if is_ttl:
            if not 0 < op.ttl <= MAX_TTL_MS:
                raise Rollback(Err.BAD_ARGUMENTS)
        elif op.ttl >= 0:
            raise Rollback(Err.BAD_ARGUMENTS)
        ephemeral = flags in (EPHEMERAL, EPHEMERAL_SEQUENTIAL)
        if ephemeral and txn.session_id not in self.sessions:
            raise Rollback(Err.SESSION_EXPIRED)
        path = op.path
        if not isinstance(path, str) or "/" not in path or "\0" in path:
            raise Rollback(Err.BAD_ARGUMENTS)
        try:
            acl = fixup_acl(path, op.acl, txn.identities)
        except ZkError as e:
            raise Rollback(e.code) from None
        parent_path = parent_of(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            raise Rollback(Err.NO_NODE)
        if not check_acl(parent.acl, Perm.CREATE, txn.identities):
            raise Rollback(Err.NO_AUTH)
        if flags in (PERSISTENT_SEQUENTIAL, EPHEMERAL_SEQUENTIAL, PERSISTENT_SEQUENTIAL_WITH_TTL):
            counter = len(parent.children) if self.unsafe_sequence_from_child_count else parent.cversion  # TEST-ONLY
            path = f"{path}{counter:010d}"
        if path_error(path) is not None:
            raise Rollback(Err.BAD_ARGUMENTS)
        if path in self.nodes:
            raise Rollback(Err.NODE_EXISTS)
        if owner_kind(parent.owner) == "normal":
            raise Rollback(Err.NO_CHILDREN_FOR_EPHEMERALS)
        quota.check(self, path, 0 if op.data is None else len(op.data), 1)
        if flags == CONTAINER:
            owner = CONTAINER_OWNER
        elif is_ttl:
            owner = ttl_owner(op.ttl)
        elif ephemeral:
            owner = txn.session_id
        else:
            owner = 0
        zxid = txn.zxid
        node = Znode(op.data, self._intern(acl), zxid, txn.time_ms, owner)
        old_cv, old_pz = parent.cversion, parent.pzxid
        name = path[len(parent_path) + (0 if parent_path == "/" else 1) :]
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
        quota.after_create(self, path, parent_path, name, op.data)
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

    def remove_node(self, path: str, zxid: int, events: list[WatchEvent]) -> None:
        """Unlink a (childless) node; parent's cversion rises via numChildren, pzxid = zxid."""
        node = self.nodes.pop(path)
        parent_path = parent_of(path)
        parent = self.nodes[parent_path]
        name = path[len(parent_path) + (0 if parent_path == "/" else 1) :]
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
        quota.after_delete(self, path, parent_path, name, node.data)
        events.append(WatchEvent(EventType.NODE_DELETED, path, zxid))
        events.append(WatchEvent(EventType.NODE_CHILDREN_CHANGED, parent_path, zxid))

    def _op_delete(self, txn: Txn, op: DeleteOp, events: list[WatchEvent]) -> None:
        path = op.path
        if not isinstance(path, str) or "/" not in path or "\0" in path or path in SPECIAL_PATHS:
            raise Rollback(Err.BAD_ARGUMENTS)
        parent = self.nodes.get(parent_of(path))
        if parent is None:
            raise Rollback(Err.NO_NODE)
        if not check_acl(parent.acl, Perm.DELETE, txn.identities):
            raise Rollback(Err.NO_AUTH)
        node = self.nodes.get(path)
        if node is None:
            raise Rollback(Err.NO_NODE)
        if op.version != -1 and op.version != node.version:
            raise Rollback(Err.BAD_VERSION)
        if node.children:
            raise Rollback(Err.NOT_EMPTY)
        self.remove_node(path, txn.zxid, events)
        return None

    def _writable(self, path: str, perm: int, identities: Iterable[Identity]) -> Znode:
        node = self.nodes.get(path)
        if node is None:
            if path_error(path) is not None:
                raise Rollback(Err.BAD_ARGUMENTS)
            raise Rollback(Err.NO_NODE)
        # A path in the tree was validated when its node was created: no second check.
        if not check_acl(node.acl, perm, identities):
            raise Rollback(Err.NO_AUTH)
        return node

    def _op_set_data(self, txn: Txn, op: SetDataOp, events: list[WatchEvent]) -> Stat:
        node = self._writable(op.path, Perm.WRITE, txn.identities)
        new_size = 0 if op.data is None else len(op.data)
        quota.check(self, op.path, new_size - (0 if node.data is None else len(node.data)), 0)
        if op.version != -1 and op.version != node.version:
            raise Rollback(Err.BAD_VERSION)
        if self._undo is not None:
            saved = (node.data, node.mzxid, node.mtime, node.version)

            def undo() -> None:
                node.data, node.mzxid, node.mtime, node.version = saved

            self._undo.append(undo)
        old = node.data
        node.data = op.data
        node.mzxid = txn.zxid
        node.mtime = txn.time_ms
        node.version += 1
        quota.after_set_data(self, op.path, old, op.data)
        events.append(WatchEvent(EventType.NODE_DATA_CHANGED, op.path, txn.zxid))
        return node.stat()

    def _op_set_acl(self, txn: Txn, op: SetACLOp, events: list[WatchEvent]) -> Stat:
        if path_error(op.path) is not None:
            raise Rollback(Err.BAD_ARGUMENTS)
        try:
            acl = fixup_acl(op.path, op.acl, txn.identities)
        except ZkError as e:
            raise Rollback(e.code) from None
        node = self._writable(op.path, Perm.ADMIN, txn.identities)
        if op.version != -1 and op.version != node.aversion:
            raise Rollback(Err.BAD_VERSION)
        node.acl = self._intern(acl)
        node.aversion += 1
        return node.stat()

    def _op_check(self, txn: Txn, op: CheckOp, events: list[WatchEvent]) -> None:
        node = self._writable(op.path, Perm.READ, txn.identities)
        if op.version != -1 and op.version != node.version:
            raise Rollback(Err.BAD_VERSION)
        return None

    def _op_multi(self, txn: Txn, op: MultiOp, events: list[WatchEvent]) -> ApplyResult:
        return multi.apply_multi(self, txn, op, events, _HANDLERS)

    def _op_create_session(self, txn: Txn, op: CreateSessionOp, events: list[WatchEvent]) -> None:
        self.sessions[op.session_id] = SessionInfo(op.timeout_ms, bytes(op.password))
        return None

    def _op_close_session(self, txn: Txn, op: CloseSessionOp, events: list[WatchEvent]) -> list[str]:
        paths = sorted(self._ephemerals.get(op.session_id, ()))
        for p in paths:
            if p in self.nodes and not self.nodes[p].children:
                self.remove_node(p, txn.zxid, events)
        self.sessions.pop(op.session_id, None)
        self._ephemerals.pop(op.session_id, None)
        return paths

    def _op_error(self, txn: Txn, op: ErrorOp, events: list[WatchEvent]) -> None:
        raise Rollback(op.code)

    def _op_set_config(self, txn: Txn, op: SetConfigOp, events: list[WatchEvent]) -> Stat:
        # ZooKeeper's reconfig is a SetDataTxn on /zookeeper/config with version -1.
        node = self.nodes[CONFIG_PATH]
        node.data = bytes(op.data)
        node.mzxid = txn.zxid
        node.mtime = txn.time_ms
        node.version = -1
        events.append(WatchEvent(EventType.NODE_DATA_CHANGED, CONFIG_PATH, txn.zxid))
        return node.stat()

    def _op_reconfig(self, txn: Txn, op: ReconfigOp, events: list[WatchEvent]) -> None:
        # A reconfig request is turned into a membership change by the leader, never applied as such.
        raise Rollback(Err.UNIMPLEMENTED)

    # --------------------------------------------------------------- snapshot

    def serialize(self) -> bytes:
        """The whole tree + session table as bytes (parents before children)."""
        return codec.write_snapshot(self.last_zxid, self.sessions, len(self.nodes), self._snapshot_nodes())

    def _snapshot_nodes(self) -> Iterator[codec.NodeRecord]:
        stack = ["/"]
        while stack:
            path = stack.pop()
            n = self.nodes[path]
            yield (
                path,
                n.data,
                n.acl,
                (n.czxid, n.mzxid, n.ctime, n.mtime, n.version, n.cversion, n.aversion, n.owner, n.pzxid),
            )
            for name in sorted(n.children, reverse=True):
                stack.append(child_path(path, name))

    @classmethod
    def deserialize(cls, blob: bytes) -> DataTree:
        """Rebuild a tree from ``serialize()``; raises ValueError if malformed."""
        last_zxid, sessions, records = codec.read_snapshot(blob)
        tree = cls.__new__(cls)
        tree._reset()
        tree.last_zxid = last_zxid
        tree.sessions = sessions
        for path, data, acl, fields in records:
            node = Znode(data, tree._intern(acl), 0, 0, 0)
            (
                node.czxid,
                node.mzxid,
                node.ctime,
                node.mtime,
                node.version,
                node.cversion,
                node.aversion,
                node.owner,
                node.pzxid,
            ) = fields
            if path != "/":
                pp = parent_of(path)
                parent = tree.nodes.get(pp)
                if parent is None:
                    raise ValueError(f"snapshot lists {path} before its parent")
                parent.children.add(path[len(pp) + (0 if pp == "/" else 1) :])
            tree.nodes[path] = node
            if node.owner:
                tree._index_owner(path, node.owner, add=True)
        if "/" not in tree.nodes:
            raise ValueError("snapshot has no root")
        quota.rebuild(tree)
        return tree

    def digest(self) -> tuple:
        """A comparable summary of the whole state (for tests and replica checks)."""
        return (
            self.last_zxid,
            tuple(sorted((sid, s.timeout_ms, s.password) for sid, s in self.sessions.items())),
            tuple(
                sorted(
                    (
                        p,
                        n.data,
                        n.acl,
                        n.czxid,
                        n.mzxid,
                        n.ctime,
                        n.mtime,
                        n.version,
                        n.cversion,
                        n.aversion,
                        n.owner,
                        n.pzxid,
                        tuple(sorted(n.children)),
                    )
                    for p, n in self.nodes.items()
                )
            ),
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
    DeleteContainerOp: containers.apply_delete_container,
    ErrorOp: DataTree._op_error,
    SetConfigOp: DataTree._op_set_config,
    ReconfigOp: DataTree._op_reconfig,
}
_CLIENT_OPS = frozenset({CreateOp, DeleteOp, SetDataOp, SetACLOp, CheckOp, MultiOp})
