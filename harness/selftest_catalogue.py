"""The catalogue of `squall selftest`: known bugs, and the campaigns that must catch them.

Each :class:`Bug` is a deliberate, realistic mistake a node developer could
write (a TEST-ONLY switch of the node, ``node/faults.py``, armed through the
database's ``prepare`` by ``--unsafe-db-fault``), paired with the campaign
(workload, nemesis, nodes, time limit, flags) whose checkers must find it
within ``attempts`` runs (seed, seed + 1, ...). The bugs were chosen as an
adversary of the checkers would choose them: across consensus, storage,
reads, sessions, watches and the data tree; several are masked most of the
time (a lagging member, a crash at the wrong moment, a reconnect) and only
the campaign's faults bring them out.

Every campaign is also run against the unmutated node, which must be judged
valid there: a campaign that cried wolf would "catch" every bug. The real
node additionally runs the :data:`FAILPOINT_CONTROLS` (crashes, stalls and
errors injected at failpoints, docs/failpoints.md), which it must survive
with a valid history.

Pure data: nothing here runs anything (``harness/selftest_cmd.py`` does).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Campaign:
    """One ``squall run`` against a squall ensemble (the local backend), or, with
    ``sim_seeds``, one ``squall sim`` over that many seeds (the deterministic
    simulator runs the real replica and Raft core under crashes, partitions and
    message loss, reordering and duplication, and checks every history)."""

    workload: str
    nemesis: str = "none"
    nodes: int = 3
    time_limit_s: float = 8.0
    interval_s: float = 3.0
    reads: str = "local"
    rate: float | None = None  # ops/s in total; None: squall run's default
    concurrency: str | None = None  # client threads (N or Nn); None: squall run's default (2n)
    failpoints: tuple[str, ...] = ()
    sim_seeds: int = 0  # > 0: a `squall sim` campaign of this many seeds (workload: the simulator's register)

    @property
    def command(self) -> str:
        return "sim" if self.sim_seeds else "run"

    def args(self) -> list[str]:
        """The `squall run` (or `squall sim`) flags of this campaign (without the fault and the seed)."""
        if self.sim_seeds:
            return ["--seeds", str(self.sim_seeds), "--nodes", str(self.nodes)]
        out = [
            "--db",
            "squall",
            "--nodes",
            str(self.nodes),
            "--workload",
            self.workload,
            "--nemesis",
            self.nemesis,
            "--time-limit",
            f"{self.time_limit_s:g}",
        ]
        if self.nemesis != "none":
            out += ["--nemesis-interval", f"{self.interval_s:g}"]
        if self.reads != "local":
            out += ["--reads", self.reads]
        if self.rate is not None:
            out += ["--rate", f"{self.rate:g}"]
        if self.concurrency is not None:
            out += ["--concurrency", self.concurrency]
        for fp in self.failpoints:
            out += ["--failpoint", fp]
        return out

    def describe(self) -> str:
        if self.sim_seeds:
            return f"squall sim, {self.sim_seeds} seeds, {self.nodes} nodes"
        parts = [self.workload, f"nemesis {self.nemesis}", f"{self.nodes} nodes", f"{self.time_limit_s:g} s"]
        if self.nemesis != "none":
            parts.append(f"every {self.interval_s:g} s")
        if self.reads != "local":
            parts.append(f"reads {self.reads}")
        if self.rate is not None:
            parts.append(f"{self.rate:g} ops/s")
        if self.concurrency is not None:
            parts.append(f"{self.concurrency} clients")
        parts += [f"failpoint {fp}" for fp in self.failpoints]
        return ", ".join(parts)


@dataclass(frozen=True)
class Bug:
    name: str  # the node's --unsafe-test-fault NAME
    kind: str
    what: str  # the mistake, in one line
    campaign: Campaign
    attempts: int = 3
    fast: bool = False  # in `squall selftest --fast` (CI)
    expect: str = ""  # which checks should see it, and why (documentation)


QUICK = 6.0  # seconds: enough for a bug that shows in fault-free operation


# A follower kept 1 s behind for most of the run, its leader killed every 4 s, 12 clients
# (the lagging-follower sequence, found reliable by bench/gates.py).
def partitions(reads: str = "local") -> Campaign:
    """Ten partitions of 2 s (any shape; about one in three isolates the leader), 12 clients at 40 ops/s."""
    return Campaign("register", "partition", time_limit_s=40, interval_s=2, reads=reads, rate=40, concurrency="12")


def lagging(workload: str, reads: str = "local") -> Campaign:
    return Campaign(workload, "lagging-follower", time_limit_s=12, interval_s=1, reads=reads, rate=40, concurrency="12")


CATALOGUE: tuple[Bug, ...] = (
    # -- consensus ------------------------------------------------------------------
    Bug(
        "commit-without-quorum",
        "consensus",
        "the leader counts an entry committed as soon as it appends it, without a quorum",
        partitions(),
        expect="a leader cut off in a minority acknowledges writes until check-quorum deposes it; the "
        "majority's new leader never saw them: linearizable (a read misses an acknowledged write)",
    ),
    Bug(
        "vote-ignores-log",
        "consensus",
        "a member grants its vote without Raft's election restriction (candidate's log up to date)",
        Campaign("register", sim_seeds=300),
        attempts=1,
        expect="a member that missed committed entries wins an election and overwrites them: the "
        "simulator's divergence check, or sequential/linearizable on its histories",
    ),
    Bug(
        "heartbeat-commit-beyond-match",
        "consensus",
        "heartbeats tell a follower the leader's commit index, not capped at what that follower holds",
        Campaign("register", sim_seeds=300),
        attempts=1,
        expect="a deposed leader that rejoins commits and applies its own stale tail: sequential",
    ),
    Bug(
        "read-index-no-quorum",
        "consensus",
        "a leader answers sync from its own commit index, never confirming it still leads (no check-quorum)",
        partitions(reads="sync"),
        expect="a leader isolated in a minority keeps answering sync; reads after it are stale: "
        "fresh-after-sync, linearizable",
    ),
    Bug(
        "diverge",
        "replication",
        "one member applies setData with other data than the rest",
        Campaign("register", time_limit_s=QUICK),
        fast=False,
        expect="the converge phase reads each member alone: converged-replicas",
    ),
    # -- storage --------------------------------------------------------------------
    Bug(
        "skip-fsync",
        "storage",
        "writes are acknowledged without fdatasync",
        Campaign("register", "disk", time_limit_s=40, interval_s=2),
        expect="a disk fault that drops unsynced bytes on enough members at once loses acknowledged "
        "writes: linearizable",
    ),
    Bug(
        "recovery-truncates-last-entry",
        "storage",
        "recovery cuts the log's last record as if torn, though it is whole",
        Campaign("register", "kill", time_limit_s=25, interval_s=2, rate=40),
        expect="when every member is killed at once, each forgets its last acknowledged entry: an "
        "acknowledged write is lost (linearizable), or a follower the leader believes up to date "
        "stalls (converged-replicas)",
    ),
    Bug(
        "lose-writes",
        "storage",
        "every 5th setData/create is acknowledged but never applied",
        Campaign("register", time_limit_s=QUICK),
        fast=True,
        expect="linearizable, sequential",
    ),
    # -- reads ----------------------------------------------------------------------
    Bug(
        "stale-reads",
        "reads",
        "reads are served from a copy of the tree 3 transactions behind",
        Campaign("register", time_limit_s=QUICK),
        expect="a process reads older than what it wrote: sequential, session-order",
    ),
    Bug(
        "sync-no-wait",
        "reads",
        "sync is answered at once, without the ReadIndex round",
        lagging("register", reads="sync"),
        expect="a follower kept behind answers sync from its stale state: fresh-after-sync",
    ),
    Bug(
        "stale-read-cache",
        "reads",
        "a member's getData cache is invalidated by create/delete/setData but not by a multi",
        Campaign("election", time_limit_s=12),
        expect="a leader's fenced read after another leader's fenced multi sees the old value: lock-fencing",
    ),
    # -- sessions -------------------------------------------------------------------
    Bug(
        "stale-reconnect",
        "sessions",
        "a member accepts a reconnecting session whose lastZxidSeen is ahead of it",
        lagging("register"),
        expect="clients of the killed leader move onto the lagging follower, which takes them back: "
        "session-order (zxid went back)",
    ),
    Bug(
        "disconnect-drops-ephemerals",
        "sessions",
        "a member deletes a session's ephemerals when its connection closes, though the session lives on",
        Campaign("session", time_limit_s=40, rate=1, failpoints=("before-reply=15%sleep(4500)",)),
        expect="a member that stalls 4.5 s before a reply (a failpoint: a GC-like pause) loses its idle "
        "clients to other members, sessions intact; when it wakes it drops those sessions' "
        "ephemerals: session (a live session's ephemeral vanished). The pause nemesis rarely shows "
        "it: a majority pause moves no session, and a client with an op in flight is retired (its "
        "session closed), which hides the bug; hence one op a second",
    ),
    # -- watches --------------------------------------------------------------------
    Bug(
        "drop-watch-events",
        "watches",
        "every 3rd watch notification of a connection is dropped",
        Campaign("watch", time_limit_s=QUICK),
        fast=True,
        expect="watch-one-shot: a read sees the change, its event never came",
    ),
    Bug(
        "late-watch-events",
        "watches",
        "watch notifications wait for the next timer tick, after replies of the same turn",
        Campaign("watch", time_limit_s=15, rate=60),
        expect="watch-one-shot (data-before-event): a read shows new data before its notification",
    ),
    Bug(
        "setwatches-ignored",
        "watches",
        "SetWatches after a reconnect is answered OK but registers nothing",
        Campaign("watch", "kill", time_limit_s=20, interval_s=2),
        expect="a client moved by a kill re-registers its watches; they never fire: watch-one-shot",
    ),
    # -- data tree and recipes -------------------------------------------------------
    Bug(
        "multi-partial",
        "data tree",
        "a multi whose later op fails keeps its earlier ops' effects",
        Campaign("multi", time_limit_s=QUICK),
        fast=True,
        expect="Elle G1a: a failed transaction's append is read",
    ),
    Bug(
        "multi-version-off-by-one",
        "data tree",
        "a multi's version check also accepts the version just before the current one",
        Campaign("multi", time_limit_s=15, rate=40),
        expect="two transactions that read the same version both commit: Elle lost update / G-single",
    ),
    Bug(
        "forwards-reversed",
        "replication",
        "a follower forwards the writes of one turn to the leader newest first",
        Campaign("watch", time_limit_s=8),
        expect="a client's pipelined writes apply out of the order sent: watch-fifo",
    ),
    Bug(
        "sequence-from-child-count",
        "data tree",
        "a sequential znode is numbered by its parent's child count, not by the parent's counter",
        Campaign("queue", time_limit_s=8),
        expect="after a consumed item a put collides NodeExists or reuses a name: queue sequential-create-collided",
    ),
    Bug(
        "idempotent-delete",
        "data tree",
        "a delete of a znode already gone is answered OK instead of NoNode",
        lagging("queue"),
        expect="two consumers race for one queue item and both win it: queue consumed-twice",
    ),
    Bug(
        "local-version-check",
        "replication",
        "a conditional setData is checked on the client's member, then forwarded unconditionally",
        lagging("counter"),
        expect="a stale version passes on the lagging member: an increment is lost (counter out of bounds)",
    ),
    # -- availability ---------------------------------------------------------------
    Bug(
        "throttle-leak",
        "availability",
        "the sync path never releases the outstanding-request throttle",
        Campaign("register", time_limit_s=12, reads="sync"),
        expect="after enough syncs every write and sync is refused: availability (unavailable)",
    ),
)

# Faults injected at failpoints that the real node must survive with a valid history
# (a member that crashes at a failpoint is restarted by the kill schedule or the heal).
FAILPOINT_CONTROLS: tuple[Campaign, ...] = (
    Campaign(
        "register", "kill", time_limit_s=12, interval_s=2, failpoints=("become-leader=1*panic", "after-fsync=2%1*panic")
    ),
    Campaign(
        "register",
        "partition",
        time_limit_s=12,
        interval_s=2,
        failpoints=("peer-send=10%error", "before-fsync=5%sleep(30)", "before-reply=2%error"),
    ),
)
FAST_FAILPOINT_CONTROLS: tuple[Campaign, ...] = FAILPOINT_CONTROLS[:1]


def by_name() -> dict[str, Bug]:
    return {b.name: b for b in CATALOGUE}


__all__ = ["CATALOGUE", "FAILPOINT_CONTROLS", "FAST_FAILPOINT_CONTROLS", "Bug", "Campaign", "by_name"]
