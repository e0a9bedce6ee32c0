"""Containers and TTL nodes: their owner encoding, which of them have expired, and their deletion.

ZooKeeper marks both with special ``ephemeralOwner`` values (``EphemeralType``)
that clients never see (they read 0). The leader proposes a
``DeleteContainerOp`` for each path ``expired`` lists (ZooKeeper's
ContainerManager); ``apply_delete_container`` re-checks at apply time, since
the tree may have changed in between, so a stale proposal fails alike on
every replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.errors import Err
from node.tree.paths import SPECIAL_PATHS, parent_of
from node.tree.records import DeleteContainerOp, Rollback, Txn, WatchEvent

if TYPE_CHECKING:
    from node.tree.datatree import DataTree

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


def expired(tree: DataTree, now_ms: int) -> list[str]:
    """Paths the leader should propose ``DeleteContainerOp`` for.

    Empty containers that have had a child (never-used ones stay, as
    ZooKeeper's default), and childless TTL nodes not modified for longer
    than their TTL.
    """
    out = []
    for p in tree._containers:
        n = tree.nodes[p]
        if not n.children and n.cversion > 0:
            out.append(p)
    for p in tree._ttls:
        n = tree.nodes[p]
        if not n.children and now_ms - n.mtime > ttl_of_owner(n.owner):
            out.append(p)
    return sorted(out)


def apply_delete_container(tree: DataTree, txn: Txn, op: DeleteContainerOp, events: list[WatchEvent]) -> None:
    """Delete the node if it is still an empty container, or a childless TTL node past its TTL."""
    path = op.path
    if not isinstance(path, str) or path in SPECIAL_PATHS or "/" not in path:
        raise Rollback(Err.BAD_ARGUMENTS)
    if parent_of(path) not in tree.nodes:
        raise Rollback(Err.NO_NODE)
    node = tree.nodes.get(path)
    if node is None:
        raise Rollback(Err.NO_NODE)
    if node.children:
        raise Rollback(Err.NOT_EMPTY)
    kind = owner_kind(node.owner)
    if kind == "container":
        pass
    elif kind == "ttl":
        if not txn.time_ms - node.mtime > ttl_of_owner(node.owner):
            raise Rollback(Err.BAD_VERSION)
    else:
        raise Rollback(Err.BAD_VERSION)
    tree.remove_node(path, txn.zxid, events)
    return None
