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
}
# Faults that only other members can make observable (see the module docstring): name -> why.
NEEDS_PEERS: dict[str, str] = {
    "sync-no-wait": "a sole member's sync has no lag to skip",
    "stale-reconnect": "a sole member has no other member, behind it, for a session to reconnect to",
}


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
        raise UnknownFault(f"test fault {name!r} cannot show on a standalone node ({NEEDS_PEERS[name]}): a run "
                           f"with it would pass; run 3 members (--peers, --nodes 3) or use one of "
                           f"{', '.join(allowed)}")
    return name


def from_env() -> str:
    return os.environ.get(FAULT_ENV, "")


def warning(name: str) -> str:
    return (f"!!! test-only fault {name!r} is armed ({FAULTS[name]}): THIS NODE IS DELIBERATELY BROKEN; "
            "never use it for real data !!!")


__all__ = ["DIVERGE_SUFFIX", "DROP_EVERY", "FAULTS", "FAULT_ENV", "LOSE_EVERY", "NEEDS_PEERS", "STALE_LAG",
           "UnknownFault", "check", "from_env", "warning"]
