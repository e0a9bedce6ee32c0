"""The data tree: a deterministic state machine over znodes, sessions and ACLs.

``DataTree.apply(txn)`` is the only way the tree changes. A ``Txn`` carries
everything apply needs (zxid, the proposer's wall time, the session and its
authenticated identities), so applying the same log on any replica, or on
replay after a crash, yields the same tree. No clocks, sockets or randomness
live here; the shell stamps transactions and carries out the returned watch
events.

The package, by job:

* ``records``: Stat, ACL entries, permissions, the ops (also the payloads of
  log entries), ``Txn``, ``WatchEvent`` and ``ApplyResult``;
* ``paths``: path validation (PathUtils) and the system paths;
* ``acl``: ZooKeeper's checkACL and fixupACL, the digest scheme's ids;
* ``datatree``: the tree itself, its reads and the single-op writes;
* ``multi``: all-or-nothing multi with rollback;
* ``quota``: quota accounting under /zookeeper/quota (and zookeeper.enforceQuota);
* ``containers``: container and TTL nodes (owner encoding, expiry, deletion);
* ``codec``: binary forms of transactions (the log) and whole-tree snapshots.

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
* /zookeeper/config holds the membership in ZooKeeper's text form; it changes
  only through ``SetConfigOp``, which the replica applies for every committed
  configuration entry (the bootstrap one included).
"""

from node.tree.acl import AUTHENTICATED_SCHEMES, check_acl, digest_id, fixup_acl
from node.tree.codec import decode_txn, encode_txn, txn_op_tag
from node.tree.containers import CONTAINER_OWNER, MAX_TTL_MS, owner_kind, ttl_of_owner, ttl_owner
from node.tree.datatree import CONFIG_PATH, DataTree, Znode
from node.tree.paths import SPECIAL_PATHS, child_path, parent_of, path_error, validate_path
from node.tree.quota import LIMIT_NODE, QUOTA_ROOT, STAT_NODE, parse_stats, render_stats
from node.tree.records import (
    ACL,
    CONTAINER,
    CREATE_KINDS,
    CREATOR_ALL_ACL,
    EPHEMERAL,
    EPHEMERAL_SEQUENTIAL,
    OPEN_ACL_UNSAFE,
    PERSISTENT,
    PERSISTENT_SEQUENTIAL,
    PERSISTENT_SEQUENTIAL_WITH_TTL,
    PERSISTENT_WITH_TTL,
    READ_ACL_UNSAFE,
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
    Op,
    Perm,
    ReconfigOp,
    SessionInfo,
    SetACLOp,
    SetConfigOp,
    SetDataOp,
    Stat,
    Txn,
    WatchEvent,
)

__all__ = [
    "ACL",
    "AUTHENTICATED_SCHEMES",
    "CONFIG_PATH",
    "CONTAINER",
    "CONTAINER_OWNER",
    "CREATE_KINDS",
    "CREATOR_ALL_ACL",
    "EPHEMERAL",
    "EPHEMERAL_SEQUENTIAL",
    "LIMIT_NODE",
    "MAX_TTL_MS",
    "OPEN_ACL_UNSAFE",
    "PERSISTENT",
    "PERSISTENT_SEQUENTIAL",
    "PERSISTENT_SEQUENTIAL_WITH_TTL",
    "PERSISTENT_WITH_TTL",
    "QUOTA_ROOT",
    "READ_ACL_UNSAFE",
    "SPECIAL_PATHS",
    "STAT_NODE",
    "ApplyResult",
    "CheckOp",
    "CloseSessionOp",
    "CreateOp",
    "CreateSessionOp",
    "DataTree",
    "DeleteContainerOp",
    "DeleteOp",
    "ErrorOp",
    "EventType",
    "Identity",
    "MultiOp",
    "Op",
    "Perm",
    "ReconfigOp",
    "SessionInfo",
    "SetACLOp",
    "SetConfigOp",
    "SetDataOp",
    "Stat",
    "Txn",
    "WatchEvent",
    "Znode",
    "check_acl",
    "child_path",
    "decode_txn",
    "digest_id",
    "encode_txn",
    "fixup_acl",
    "owner_kind",
    "parent_of",
    "parse_stats",
    "path_error",
    "render_stats",
    "ttl_of_owner",
    "ttl_owner",
    "txn_op_tag",
    "validate_path",
]
