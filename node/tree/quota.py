"""Quota accounting under /zookeeper/quota, as Apache ZooKeeper 3.8 keeps it.

A quota on ``/p`` is two ordinary znodes that clients (``zkCli.sh setquota``)
create: ``/zookeeper/quota/p/zookeeper_limits`` (the limits) and
``/zookeeper/quota/p/zookeeper_stats`` (the usage). Both hold ZooKeeper's
``StatsTrack`` text: ``count=N,bytes=M``, plus ``=;byteHardLimit=..;countHardLimit=..``
when hard limits are set. The tree keeps them current inside ``apply``, so every
replica (and every replay) computes the same:

* creating a ``zookeeper_limits`` node makes its path a quota root; deleting it
  ends the quota; creating ``zookeeper_stats`` fills it with the subtree's
  current count (nodes, the root of the subtree included) and bytes (data);
* every create, delete and setData under a quota root adjusts the stats of the
  deepest root above it (ZooKeeper's ``getMaxPrefixWithQuota``), by rewriting the
  stats node's data without touching its Stat, as ZooKeeper does;
* with ``enforce_quota`` (ZooKeeper's ``zookeeper.enforceQuota``; off by
  default) a create or setData that would take the usage past a *hard* limit
  fails with QuotaExceeded (-125), checked where ZooKeeper checks it (create:
  after every other check; setData: after the ACL check, before the version);
  exceeding a soft limit is logged (when the usage crosses it).

Departures, for determinism: ZooKeeper recomputes every stats node when it
loads a snapshot; here the stats travel in the snapshot as they are, so a
restarted replica holds exactly what the others hold. Unparsable key=value
pairs in a limits or stats node are skipped (ZooKeeper's parser throws on the
apply path). Inside a multi the check sees the earlier ops of the same multi
(ZooKeeper checks each op against the tree before the multi).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from node.errors import Err
from node.tree.paths import parent_of
from node.tree.records import Rollback

if TYPE_CHECKING:
    from node.tree.datatree import DataTree

log = logging.getLogger("squall.node.quota")

QUOTA_ROOT = "/zookeeper/quota"
LIMIT_NODE = "zookeeper_limits"
STAT_NODE = "zookeeper_stats"

_PAIRS = re.compile(r"[,;]+")
_LONG = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def limit_path(prefix: str) -> str:
    return f"{QUOTA_ROOT}{prefix}/{LIMIT_NODE}"


def stat_path(prefix: str) -> str:
    return f"{QUOTA_ROOT}{prefix}/{STAT_NODE}"


def parse_stats(data: bytes | None) -> dict[str, int]:
    """ZooKeeper's StatsTrack parser: ``k=v`` pairs split on ``,`` or ``;`` (missing keys read -1)."""
    out: dict[str, int] = {}
    if not data:
        return out
    text = data.decode("utf-8", "replace")
    for pair in _PAIRS.split(text):
        parts = pair.split("=")
        while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
            parts.pop()
        if len(parts) < 2 or not _LONG.fullmatch(parts[1]):
            continue  # ZooKeeper throws here; skipping keeps apply total and deterministic
        value = int(parts[1])
        if _LONG_MIN <= value <= _LONG_MAX:
            out[parts[0]] = value
    return out


def render_stats(stats: dict[str, int]) -> bytes:
    """StatsTrack.toString: count and bytes first; other keys after ``=;``, sorted, ``;``-separated."""
    text = f"count={stats.get('count', -1)},bytes={stats.get('bytes', -1)}"
    extra = sorted(k for k in stats if k not in ("count", "bytes"))
    if extra:
        text += "=" + "".join(f";{k}={stats[k]}" for k in extra)
    return text.encode("utf-8")


class QuotaIndex:
    """The paths that have a quota (ZooKeeper's PathTrie of limit nodes)."""

    __slots__ = ("roots",)

    def __init__(self) -> None:
        self.roots: set[str] = set()

    def max_prefix(self, path: str) -> str | None:
        """The deepest quota root at or above ``path`` (never "/"), or None."""
        if not self.roots:
            return None
        p = path
        while p != "/":
            if p in self.roots:
                return p
            p = parent_of(p)
        return None


def _quota_prefix(parent_path: str) -> str | None:
    """The quota's path for a limit/stat node whose parent is ``parent_path``, or None."""
    if not parent_path.startswith(QUOTA_ROOT + "/"):
        return None
    return parent_path[len(QUOTA_ROOT) :]


def _set_data(tree: DataTree, path: str, data: bytes) -> None:
    node = tree.nodes[path]
    old = node.data
    node.data = data
    if tree._undo is not None:

        def undo() -> None:
            node.data = old

        tree._undo.append(undo)


def _subtree_usage(tree: DataTree, path: str) -> tuple[int, int]:
    count = size = 0
    if path not in tree.nodes:
        return 0, 0
    stack = [path]
    while stack:
        p = stack.pop()
        n = tree.nodes[p]
        count += 1
        size += 0 if n.data is None else len(n.data)
        stack.extend(f"{p}/{c}" for c in n.children)
    return count, size


def _limit(limits: dict[str, int], soft: str, hard: str) -> tuple[int, bool]:
    """(the limit checkQuota applies, whether it is the hard one)."""
    if limits.get(hard, -1) > -1:
        return limits[hard], True
    return limits.get(soft, -1), False


def _update_usage(tree: DataTree, prefix: str, bytes_diff: int, count_diff: int) -> None:
    sp = stat_path(prefix)
    node = tree.nodes.get(sp)
    if node is None:
        return  # ZooKeeper logs "Missing node for stat" and carries on
    stats = parse_stats(node.data)
    old_count, old_bytes = stats.get("count", -1), stats.get("bytes", -1)
    stats["count"], stats["bytes"] = old_count + count_diff, old_bytes + bytes_diff
    _set_data(tree, sp, render_stats(stats))
    limits_node = tree.nodes.get(limit_path(prefix))
    if limits_node is None:
        return
    limits = parse_stats(limits_node.data)
    for what, old, new, soft, hard in (
        ("count", old_count, stats["count"], "count", "countHardLimit"),
        ("bytes", old_bytes, stats["bytes"], "bytes", "byteHardLimit"),
    ):
        limit, is_hard = _limit(limits, soft, hard)
        if limit > -1 and new > limit >= old:
            kind = "hard" if is_hard else "soft"
            name = "CountLimit" if what == "count" else "ByteLimit"
            log.warning("Quota exceeded: %s [current %s=%d, %s%s=%d]", prefix, what, new, kind, name, limit)


def _add_root(tree: DataTree, prefix: str) -> None:
    roots = tree.quotas.roots
    if prefix not in roots:
        roots.add(prefix)
        if tree._undo is not None:
            tree._undo.append(lambda: roots.discard(prefix))


def _remove_root(tree: DataTree, prefix: str) -> None:
    roots = tree.quotas.roots
    roots.discard(prefix)
    if tree._undo is not None:
        tree._undo.append(lambda: roots.add(prefix))


def after_create(tree: DataTree, path: str, parent_path: str, name: str, data: bytes | None) -> None:
    if name in (LIMIT_NODE, STAT_NODE):
        prefix = _quota_prefix(parent_path)
        if prefix:
            if name == LIMIT_NODE:
                _add_root(tree, prefix)
            else:
                count, size = _subtree_usage(tree, prefix)
                _set_data(tree, path, render_stats({"count": count, "bytes": size}))
    prefix = tree.quotas.max_prefix(path)
    if prefix is not None:
        _update_usage(tree, prefix, 0 if data is None else len(data), 1)


def after_delete(tree: DataTree, path: str, parent_path: str, name: str, data: bytes | None) -> None:
    if name == LIMIT_NODE:
        prefix = _quota_prefix(parent_path)
        if prefix and prefix in tree.quotas.roots:
            _remove_root(tree, prefix)
    prefix = tree.quotas.max_prefix(path)
    if prefix is not None:
        _update_usage(tree, prefix, -(0 if data is None else len(data)), -1)


def after_set_data(tree: DataTree, path: str, old: bytes | None, new: bytes | None) -> None:
    prefix = tree.quotas.max_prefix(path)
    if prefix is not None:
        _update_usage(tree, prefix, (0 if new is None else len(new)) - (0 if old is None else len(old)), 0)


def check(tree: DataTree, path: str, bytes_diff: int, count_diff: int) -> None:
    """ZooKeeper's checkQuota: raise Rollback(QUOTA_EXCEEDED) past a hard limit (only with enforce_quota)."""
    if not tree.enforce_quota:
        return
    prefix = tree.quotas.max_prefix(path)
    if prefix is None:
        return
    limits_node = tree.nodes.get(limit_path(prefix))
    if limits_node is None:
        return
    limits = parse_stats(limits_node.data)
    checks = []
    if count_diff != 0 and (limits.get("count", -1) > -1 or limits.get("countHardLimit", -1) > -1):
        checks.append(("count", count_diff, "count", "countHardLimit", "CountLimit"))
    if bytes_diff != 0 and (limits.get("bytes", -1) > -1 or limits.get("byteHardLimit", -1) > -1):
        checks.append(("bytes", bytes_diff, "bytes", "byteHardLimit", "ByteLimit"))
    if not checks:
        return
    stats_node = tree.nodes.get(stat_path(prefix))
    if stats_node is None:
        return
    usage = parse_stats(stats_node.data)
    for what, diff, soft, hard, name in checks:
        new = usage.get(what, -1) + diff
        limit, is_hard = _limit(limits, soft, hard)
        if new > limit and is_hard:
            log.warning("Quota exceeded: %s [current %s=%d, hard%s=%d]", prefix, what, new, name, limit)
            raise Rollback(Err.QUOTA_EXCEEDED)


def rebuild(tree: DataTree) -> None:
    """The quota roots of a tree loaded from a snapshot: every limits node under /zookeeper/quota."""
    tree.quotas.roots = {
        _quota_prefix(parent_of(p)) or ""
        for p in tree.nodes
        if p.endswith("/" + LIMIT_NODE) and _quota_prefix(parent_of(p))
    }
