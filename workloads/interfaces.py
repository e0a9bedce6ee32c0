"""The client interfaces workloads need, and databases offer.

An interface is an op vocabulary: the ``f`` names a client must handle, the
value each takes and what its ok completion carries. A database offers a
client per interface it supports (``harness.dbs.base.DB.clients``); a
workload names the one it needs (``Workload.interface``). Every client
answers an op it does not know with a ``fail`` naming the allowed ones, maps
a definite refusal to ``fail`` and anything that may have taken effect to
``info`` (``workloads.base``).

The meanings below are what the workloads' checkers assume; a database's
client must keep them (e.g. values unique per key are the op sources' job,
"cas" must be a true compare-and-set), or say in its docs where it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interface:
    name: str
    summary: str
    ops: tuple[tuple[str, str], ...]  # (f, "value -> ok value: meaning")

    @property
    def fs(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.ops)


INTERFACES: dict[str, Interface] = {
    i.name: i
    for i in (
        Interface(
            "register",
            "per-key registers holding ints (linearizable writes and cas)",
            (
                (
                    "read",
                    "[k, null] -> [k, v]: v the key's value, null if never written; local read, or "
                    "fresh with the client setting reads=sync, or linearizable with reads=linearizable",
                ),
                ("write", "[k, v] -> [k, v]: set the key to v (creating it)"),
                ("cas", "[k, [old, new]] -> [k, [old, new]]: set to new iff it holds old; fail when it does not"),
            ),
        ),
        Interface(
            "set",
            "a grow-only set of unique ints",
            (
                ("add", "n -> n: add the element n (each n is added once)"),
                ("read", "null -> [n, ...]: every element, sorted (may be stale)"),
                ("final-read", "null -> [n, ...]: every element, after a barrier that makes it fresh"),
            ),
        ),
        Interface(
            "lock",
            "a mutex guarding two counters, one written under a fence",
            (
                (
                    "fenced-write",
                    "null -> {read, wrote, lock, write_zxid}: under the lock, counter += 1, "
                    "the write conditional on still holding the lock; fail: lock-timeout or "
                    "fence-rejected",
                ),
                ("unfenced-write", "null -> {read, wrote, lock, write_zxid}: the same with a plain write"),
            ),
        ),
        Interface(
            "session",
            "client sessions and the ephemeral data they own",
            (
                ("create", "null -> {node, session, expired, reopened}: an ephemeral owned by this session"),
                ("close", "null -> {closed, session, expired}: close the session (confirmed), open a new one"),
                ("final-read", "null -> {session, nodes: {name: owner}, expired}: every ephemeral and its owner"),
            ),
        ),
        Interface(
            "multi",
            "all-or-nothing transactions over list-valued keys",
            (
                (
                    "txn",
                    '[["r", k, null] | ["append", k, n], ...] -> the micro-ops, reads filled in; '
                    "atomic and strictly serializable, fail when refused as a whole",
                ),
                ("doomed-txn", "the same micro-ops plus a final step that must fail -> fail, nothing applied"),
            ),
        ),
        Interface(
            "watch",
            "one-shot and persistent change notifications, ordered with replies",
            (
                (
                    "write",
                    "[key, n] -> [key, n-as-text, version]; on a child key (c0, c1): create or delete a "
                    "child, on an exists key (e0, e1): create or delete the znode -> [key, change, null]",
                ),
                (
                    "write-burst",
                    "[key, [n, ...]] -> [key, [[n-as-text, version], ...]]: the writes pipelined on one "
                    "connection, in the order sent",
                ),
                (
                    "watch-read",
                    "[key, null] -> {key, data, version, client, session, armed?, fired?, ...}: "
                    "read and arm a one-shot watch; says whether the previous one fired before this reply "
                    "(a child key: the children and their cversion, under a child watch)",
                ),
                (
                    "exists-read",
                    "[key, null] -> {key, state, client, session, armed?, fired?}: exists under a one-shot "
                    "exists watch (state: absent or the czxid); says whether the previous one fired",
                ),
                (
                    "pwatch-read",
                    "[key, null] -> {key, data, version, ..., prev_version?, events?}: read under "
                    "a persistent recursive watch; counts its events since the previous read",
                ),
            ),
        ),
        Interface(
            "watch-stream",
            "a revision-ordered watch stream on a key prefix, resumable (etcd's watch)",
            (
                ("write", "[key, n] -> [key, n, revision]: put; the revision it created"),
                (
                    "watch",
                    "back -> {events: [[revision, key, value], ...], start?, resumed?, breaks?}: the events "
                    "delivered since the previous watch op; the first opens the stream back revisions ago",
                ),
                (
                    "final-watch",
                    "null -> {events, fence: [key, value, revision]}: write a fence and wait until the "
                    "stream delivered it",
                ),
            ),
        ),
        Interface(
            "queue",
            "two FIFO queues of unique ints (plain and locking)",
            (
                (
                    "put",
                    "[q, n] -> [q, n, path, czxid]: the sequential znode created and its creation zxid "
                    "([q, n] when the database has no such names)",
                ),
                ("get", "[q, null] -> [q, n | null]: consume one item (null: empty)"),
                ("final-read", "null -> {q: [n, ...]}: what is left in each queue, fresh, without consuming"),
            ),
        ),
        Interface(
            "counter",
            "one shared counter",
            (
                ("add", "d -> d: counter += d, applied at most once"),
                ("read", "null -> [value, session]"),
                ("final-read", "null -> [value, session]: after a barrier that makes it fresh"),
            ),
        ),
        Interface(
            "election",
            "leader election with fenced leader writes",
            (
                (
                    "lead",
                    "null -> {read, wrote, lock, write_zxid}: win the election within a bound and, as "
                    "leader, counter += 1 conditional on still leading; fail: not-elected or fence-rejected",
                ),
                ("final-lead", "null -> the same, with a longer bound (liveness after healing)"),
            ),
        ),
    )
}
