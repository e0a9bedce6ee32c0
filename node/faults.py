"""TEST-ONLY database faults: a node that misbehaves on purpose.

The harness proves that its checkers catch a broken database by running the
node with one of these armed (``squall run --unsafe-db-fault NAME``, which
starts every node with ``--unsafe-test-fault NAME``; the environment variable
``SQUALL_UNSAFE_TEST_FAULT`` is honoured too). Never arm one outside such a
test: each is a realistic bug a node developer could write, and each breaks a
guarantee ZooKeeper documents. With none armed (the default) every fault is
inert: the code paths below are the production paths, with one ``if`` that
is false.

Every node -- standalone or a member of three or five -- runs the same code
(``node.replica``, ``node.server``), so every fault is carried out by each.
Two cannot show on a standalone node, whatever its code does: a sole member
has no lag for ``sync-no-wait`` to expose and no other member for
``stale-reconnect`` to reconnect from (:data:`NEEDS_PEERS`); a run with one of
them would pass although the node is armed, so a standalone node refuses
them (a broken-database gate must never pass because its bug could not show).
"""

from __future__ import annotations

import os

FAULT_ENV = "SQUALL_UNSAFE_TEST_FAULT"
STALE_LAG = 3  # stale-reads: transactions the read copy lags behind
LOSE_EVERY = 5  # lose-writes: one in this many eligible writes is lost
DROP_EVERY = 3  # drop-watch-events: one in this many notifications per connection is dropped
DIVERGE_SUFFIX = b"~diverged"  # diverge: appended to the data a diverging member applies
THROTTLE_LIMIT = 10  # throttle-leak: syncs a member answers before it refuses every write and sync
#                     (small, so that a short campaign reaches it)

FAULTS: dict[str, str] = {
    "lose-writes": f"every {LOSE_EVERY}th setData or plain persistent create is acknowledged "
    "(with a plausible Stat, or the path) but never applied",
    "stale-reads": "exists/getData/getChildren are served from a copy of the tree that lags "
    f"{STALE_LAG} transactions behind",
    "sync-no-wait": "sync is answered at once, without the ReadIndex round, so a read after a sync "
    "may miss acknowledged writes",
    "stale-reconnect": "a member accepts a reconnecting session whose lastZxidSeen is ahead of its own "
    "applied zxid and serves it from its older state",
    "drop-watch-events": f"every {DROP_EVERY}rd watch notification of a connection is silently dropped",
    "multi-partial": "a multi whose later op fails keeps the effects of its earlier ops "
    "(on every replica alike: apply stays deterministic)",
    "diverge": "the member with the highest id applies setData with altered data, so replicas diverge",
    "skip-fsync": "writes are acknowledged without fdatasync (lost when the disk drops unsynced writes)",
    # One for each recipe check and for availability (docs/consistency.md):
    "idempotent-delete": "a delete of a znode that is already gone is answered OK instead of NoNode (a "
    "'retry-friendly' delete), so two consumers that race for one queue item both win it",
    "local-version-check": "a conditional setData is checked against the version on the member the client "
    "is attached to and then forwarded unconditionally, so two concurrent "
    "read-modify-writes both succeed and one increment of a counter is lost",
    "stale-read-cache": "a member caches getData answers and drops a path's entry when a create, delete or "
    "setData of it applies, but not when a multi writes it, so a leader's fenced read "
    "after another leader's fenced multi sees the old value",
    "sequence-from-child-count": "a sequential znode's number is its parent's current child count instead of "
    "its counter, so after a delete a name is handed out again (or the create collides NodeExists)",
    "throttle-leak": "a member's outstanding-request throttle is released when a write is answered but the "
    f"sync path forgets to release it; after {THROTTLE_LIMIT} syncs the member answers every "
    "write and sync with ConnectionLoss (plain reads still work): safe, but unavailable",
}
# Faults that only other members can make observable (see the module docstring): name -> why.
NEEDS_PEERS: dict[str, str] = {
    "sync-no-wait": "a sole member's sync has no lag to skip",
    "stale-reconnect": "a sole member has no other member, behind it, for a session to reconnect to",
    "commit-without-quorum": "a sole member's own acknowledgement is its quorum",
    "vote-ignores-log": "a sole member votes for itself only",
    "heartbeat-commit-beyond-match": "a sole member has no follower to send heartbeats to",
    "read-index-no-quorum": "a sole member's sync needs no quorum round anyway",
    "forwards-reversed": "a sole member forwards nothing",
}

# The selftest catalogue's own bugs (issue 16; `squall selftest`, docs/track-record.md).
# Like the ones above: realistic mistakes, each breaking a guarantee ZooKeeper or
# Raft documents, inert unless armed, carried out on the production path.
FAULTS.update(
    {
        "commit-without-quorum": "a leader counts an entry committed as soon as it appends it, without waiting "
        "for a quorum to acknowledge it",
        "vote-ignores-log": "a member grants its vote (and pre-vote) without checking that the candidate's log is "
        "at least as up to date as its own (Raft's election restriction, section 5.4.1)",
        "heartbeat-commit-beyond-match": "the leader's heartbeats tell each follower its own commit index, not "
        "capped at what that follower is known to hold, so a follower with a "
        "stale tail from an old term commits and applies it",
        "read-index-no-quorum": "a leader answers sync (ReadIndex) from its own commit index without confirming "
        "with a heartbeat quorum that it still leads, and never steps down when it loses "
        "its quorum (no check-quorum)",
        "recovery-truncates-last-entry": "recovery takes the log's last record for a torn write and cuts it, "
        "even when it is whole (an off-by-one in the torn-tail check), so every "
        "restart forgets the last entry the member acknowledged",
        "late-watch-events": "watch notifications are sent at the next timer tick instead of before the replies of "
        "the same turn, so a client can read new data before its watch event",
        "setwatches-ignored": "SetWatches (a client re-registering its watches after a reconnect) is answered OK "
        "but registers nothing: watches set before a move never fire",
        "multi-version-off-by-one": "a multi's setData/check version test also accepts the version just before "
        "the current one (an off-by-one), so a stale read-modify-write commits",
        "disconnect-drops-ephemerals": "when a client's connection to a member closes, that member deletes the "
        "session's ephemeral nodes, although the session lives on (ephemerals tied "
        "to the connection, not the session)",
        "forwards-reversed": "a follower forwards the writes that arrived in one turn to the leader newest first "
        "(a stack where a queue belongs), so a client's pipelined writes apply out of the order sent",
    }
)
# The faults the replica and its Raft core carry out by themselves, so the simulator
# (node/sim.py, which runs replicas without the asyncio shell) can arm them too.
SIM_FAULTS = (
    "lose-writes",
    "stale-reads",
    "sync-no-wait",
    "stale-reconnect",
    "diverge",
    "commit-without-quorum",
    "vote-ignores-log",
    "heartbeat-commit-beyond-match",
    "read-index-no-quorum",
    "recovery-truncates-last-entry",
)


class UnknownFault(ValueError):
    """A fault name that is not one of FAULTS."""


def check(name: str, members: int = 0) -> str:
    """``name`` if it is a known fault ("" for none); raises UnknownFault naming the allowed ones.

    With ``members`` = 1 (a standalone node) the faults of NEEDS_PEERS are refused too, saying why."""
    if not name:
        return ""
    if name not in FAULTS:
        raise UnknownFault(f"test fault {name!r} is not supported by the node; allowed: {', '.join(FAULTS)}")
    if members == 1 and name in NEEDS_PEERS:
        allowed = [f for f in FAULTS if f not in NEEDS_PEERS]
        raise UnknownFault(
            f"test fault {name!r} cannot show on a standalone node ({NEEDS_PEERS[name]}): a run "
            f"with it would pass; run 3 members (--peers, --nodes 3) or use one of "
            f"{', '.join(allowed)}"
        )
    return name


def from_env() -> str:
    return os.environ.get(FAULT_ENV, "")


def warning(name: str) -> str:
    return (
        f"!!! test-only fault {name!r} is armed ({FAULTS[name]}): THIS NODE IS DELIBERATELY BROKEN; "
        "never use it for real data !!!"
    )


__all__ = [
    "DIVERGE_SUFFIX",
    "DROP_EVERY",
    "FAULTS",
    "FAULT_ENV",
    "LOSE_EVERY",
    "NEEDS_PEERS",
    "SIM_FAULTS",
    "STALE_LAG",
    "THROTTLE_LIMIT",
    "UnknownFault",
    "check",
    "from_env",
    "warning",
]
