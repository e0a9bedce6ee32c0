"""Raft with pre-vote and check-quorum, as a pure state machine (etcd-raft style).

The core never touches a socket, a disk or a clock. The shell feeds it
`tick()` (its only notion of time), `step(message)` (peer input),
`propose(data)` and `read_index(context)` (client input), then drains
`ready()`: persist, send, apply, `advance()`. Randomness (election timeout
jitter) comes from the injected `random.Random`, so a seed replays a run.

The protocol, its invariants and the zxid mapping are written down in
docs/protocol.md; comments here say why a rule exists, not what Raft is.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from node.failpoints import Failpoints

from .log import RaftLog
from .messages import (
    COUNTER_MASK,
    EARLY_TYPES,
    MAX_TERM,
    ConfRefused,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    NotLeader,
    PersistentState,
    ReadState,
    Ready,
    Snapshot,
    SoftState,
    make_zxid,
    must_sync,
)
from .messages import (
    MessageType as MT,
)


class Role(enum.StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class ProgressState(enum.StrEnum):
    PROBE = "probe"  # one append in flight until the follower answers
    REPLICATE = "replicate"  # stream entries optimistically
    SNAPSHOT = "snapshot"  # a snapshot is on its way; wait for its ack


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower."""

    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    pending_snapshot: int = 0
    recent_active: bool = False
    snapshot_elapsed: int = 0  # ticks since the snapshot was sent
    idle: int = 0  # ticks since the leader last heard from this member

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.probe_sent = False
        self.snapshot_elapsed = 0

    def maybe_update(self, index: int) -> bool:
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease(self, rejected: int, hint: int) -> bool:
        """Move `next` back after a rejection; False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # answers an older probe
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True


@dataclass(slots=True)
class _ReadRequest:
    context: bytes
    index: int
    frm: int  # the node that asked (self for local reads)
    acks: set[int] = field(default_factory=set)


class RaftNode:
    """One member of a Raft group whose membership changes one server at a time.

    `peers` lists every member id (this node's own id may be included or not):
    the voters of the bootstrap configuration. `bootstrap` gives that
    configuration in full instead (voters, learners, the shell's context); a
    member joining an existing group starts with no voters at all
    (`ConfState(())`) and learns the membership from the leader's log or
    snapshot. `propose_conf_change` appends a new configuration; every node
    uses the latest configuration in its log, committed or not, so a change
    takes effect on a node when the node appends it and is undone if the
    entry is truncated (Raft thesis §4.1; docs/protocol.md, "Membership
    changes").
    `storage_state` is what the node's disk holds (None for a brand-new node).
    `election_ticks` must exceed `heartbeat_ticks`; the actual timeout is drawn
    from [election_ticks, 2*election_ticks) after every reset, so that two
    followers rarely time out together.

    `unsafe_commit_without_quorum` is a TEST-ONLY fault injection: a leader
    that has it commits every entry as soon as it appends it, without waiting
    for a quorum. It exists so tests can prove the randomized checker catches
    a real safety bug. Never set it outside tests.

    `failpoints` are the member's TEST-ONLY failpoints (node.failpoints):
    `campaign`, `become-leader`, `step-down`, `snapshot-send` and
    `snapshot-install` are passed here; none is armed by default.
    """

    def __init__(
        self,
        id: int,
        peers: Iterable[int],
        storage_state: PersistentState | None,
        rng: random.Random,
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        *,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_entries_per_message: int = 64,
        unsafe_commit_without_quorum: bool = False,
        bootstrap: ConfState | None = None,
        unsafe_fault: str = "",
        failpoints: Failpoints | None = None,
    ) -> None:
        if id <= 0:
            raise ValueError(f"node id must be a positive integer, got {id}")
        if heartbeat_ticks < 1 or election_ticks <= heartbeat_ticks:
            raise ValueError(
                f"need 1 <= heartbeat_ticks < election_ticks, got heartbeat_ticks={heartbeat_ticks}, "
                f"election_ticks={election_ticks}"
            )
        if max_entries_per_message < 1:
            raise ValueError(f"max_entries_per_message must be >= 1, got {max_entries_per_message}")
        self.id = id
        if bootstrap is None:
            bootstrap = ConfState(tuple(sorted(set(peers) | {id})))
        if any(p <= 0 for p in bootstrap.members):
            raise ValueError(f"peer ids must be positive integers, got {sorted(bootstrap.members)}")
        if set(bootstrap.voters) & set(bootstrap.learners):
            raise ValueError(f"ids {sorted(set(bootstrap.voters) & set(bootstrap.learners))} are voters and learners")
        self.rng = rng
        self.election_ticks = election_ticks
        self.heartbeat_ticks = heartbeat_ticks
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.max_entries = max_entries_per_message
        # TEST-ONLY faults of node.faults that live in the core ("" = none): vote-ignores-log,
        # heartbeat-commit-beyond-match, read-index-no-quorum (which also turns check-quorum off)
        self.unsafe_fault = unsafe_fault
        if unsafe_fault == "read-index-no-quorum":
            self.check_quorum = False
        self.unsafe_commit_without_quorum = unsafe_commit_without_quorum
        self.fp = failpoints if failpoints is not None else Failpoints()

        st = storage_state or PersistentState()
        self.log = RaftLog(st.snapshot, st.entries, st.hard_state.commit, st.applied, bootstrap)
        self.voters: frozenset[int] = frozenset()
        self.learners: frozenset[int] = frozenset()
        self.conf = bootstrap
        self.conf_index = -1  # the log index of the configuration in force (the snapshot's for the base)
        self._conf_seen: tuple[int, int] = (-1, -1)  # (log conf epoch, conf index) last adopted
        # Leader: members removed by a configuration change, still sent the log for a while
        # so that they learn of it.
        self._departing: dict[int, list[int]] = {}  # removed member -> [removal index, ticks since committed]
        self._durable_sent = False  # leader: sent DURABLE this term (followers may commit without us)
        # The highest commit index a leader's append has carried (appends carry the leader's own):
        # a node that has applied less is still catching up with history.
        self.leader_commit = 0
        self.term = st.hard_state.term
        self.vote: int | None = st.hard_state.vote
        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = election_ticks
        self.votes: dict[int, bool] = {}
        self.progress: dict[int, Progress] = {}
        self.zxid_counter = 0
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.pending_reads: list[_ReadRequest] = []  # leader: awaiting a quorum of heartbeat acks
        self.deferred_reads: list[tuple[int, bytes]] = []  # leader before its first commit
        # Leader: new entries or a new commit index wait for the next ready() to go out, so
        # that everything proposed or acknowledged between two Readys leaves as one append
        # per follower instead of one per entry (see _flush_broadcast).
        self._broadcast_pending = False
        # Follower of a 3-member ensemble: how far the leader said its log is on its disk.
        self._leader_durable_index = 0
        self._prev_hard = self.hard_state()
        self._prev_soft = self.soft_state()
        self._outstanding: Ready | None = None  # handed out by ready(), not yet advanced
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election
        self._sync_conf()
        self._become_follower(self.term, None)

    # -- public interface -------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._tick()

    def step(self, m: Message) -> None:
        """Feed one message from a peer. Messages not addressed to us or of the
        wrong shape are ignored (a bad peer must not be able to crash the
        node). Messages from ids outside our configuration are taken: a leader
        of a newer configuration than ours, or a member we are about to learn
        of, must reach us; only the votes and acknowledgements of members of
        the configuration in force are ever counted."""
        if m.to != self.id or m.frm <= 0 or m.frm == self.id:
            return
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE) and self._in_lease():
                # check-quorum: we heard from a live leader within the election
                # timeout, so this candidate is disruptive (e.g. it was
                # partitioned away); don't let it bump our term.
                return
            if m.type is MT.PRE_VOTE or (m.type is MT.PRE_VOTE_RESP and not m.reject):
                # Pre-votes are for a future term: they never change ours.
                pass
            elif m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APPEND):
                # A stale leader (or a node that was partitioned and whose
                # pre-votes can't win) learns our term and steps down, instead
                # of both sides waiting forever.
                self._send(MT.APPEND_RESP, m.frm)
            elif m.type is MT.PRE_VOTE:
                self._send(MT.PRE_VOTE_RESP, m.frm, reject=True)
            return

        if m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step(m)

    def propose(self, data: bytes) -> int | NotLeader:
        """Append `data` as a new entry. Returns its log index on the leader;
        otherwise a NotLeader naming the leader to forward to (if known)."""
        if self.role is not Role.LEADER:
            return NotLeader(self.leader)
        if self.zxid_counter >= COUNTER_MASK:
            # ZooKeeper forces a new epoch when the 32-bit counter would roll
            # over; so do we, by stepping down so that a new term starts.
            self._become_follower(self.term, None)
            return NotLeader(None, "zxid counter exhausted for this term; electing a new leader")
        return self._append_entry(EntryKind.NORMAL, bytes(data))

    def propose_conf_change(self, conf: ConfState) -> int | NotLeader | ConfRefused:
        """Append a new configuration (the leader only): one voter added or removed at a time.

        Refused ("in-progress") while the configuration in force is not
        committed, and for a new leader until it has committed an entry of its
        own term (the fix to single-server changes in the Raft thesis' errata);
        refused ("no-quorum") unless a quorum of the new voters is connected and
        caught up (ZooKeeper's isQuorumSynced: a new voter that is not there yet
        may still be added if the others make a quorum); refused ("invalid")
        for a configuration that changes more than one voter, has no voter, or
        lists an id twice. The change takes effect on each member as soon as
        that member appends it.
        """
        refused = self.conf_change_refusal(conf)
        if refused is not None:
            return refused
        if self.zxid_counter >= COUNTER_MASK:
            self._become_follower(self.term, None)
            return NotLeader(None, "zxid counter exhausted for this term; electing a new leader")
        return self._append_entry(EntryKind.CONF, conf.to_bytes())

    def conf_change_refusal(self, conf: ConfState) -> NotLeader | ConfRefused | None:
        """Why `propose_conf_change(conf)` would be refused now, or None (a dry run)."""
        if self.role is not Role.LEADER:
            return NotLeader(self.leader)
        voters, learners = set(conf.voters), set(conf.learners)
        if not voters or len(voters) != len(conf.voters) or len(learners) != len(conf.learners) or voters & learners:
            return ConfRefused(
                "invalid", f"bad configuration: voters {list(conf.voters)}, learners {list(conf.learners)}"
            )
        if any(i <= 0 for i in voters | learners):
            return ConfRefused("invalid", "member ids must be positive")
        if len(voters ^ self.voters) > 1:
            return ConfRefused(
                "invalid",
                f"voters {sorted(self.voters)} -> {sorted(voters)} changes more than one "
                "voter; change one server at a time",
            )
        if self.conf_index > self.log.committed:
            return ConfRefused(
                "in-progress", f"the configuration change at index {self.conf_index} is not committed yet"
            )
        if self.log.term(self.log.committed) != self.term:
            return ConfRefused("in-progress", "this leader has not committed an entry of its term yet")
        unsynced = sorted(p for p in voters - self.voters if not self.synced(p))
        if unsynced:
            # A new voter must already hold the log (as a learner): a voter that has not heard from
            # any leader yet cannot vote (see _handle_vote_request), and a quorum must not need it.
            return ConfRefused(
                "catch-up",
                f"new voter(s) {unsynced} must first be caught-up learners (add them as observers, then promote them)",
            )
        synced = sum(1 for p in voters if p == self.id or self.synced(p))
        if synced < len(voters) // 2 + 1:
            return ConfRefused(
                "no-quorum",
                f"only {synced} of the new voters {sorted(voters)} are connected and "
                f"caught up; a quorum is {len(voters) // 2 + 1}",
            )
        return None

    def conf_change_pending(self) -> bool:
        """The configuration in force is not committed yet, or (a new leader) this leader has
        not committed an entry of its own term: no other change may be proposed now."""
        return self.conf_index > self.log.committed or self.log.term(self.log.committed) != self.term

    def synced(self, p: int) -> bool:
        """(Leader) `p` is connected and caught up: streamed to, heard from within an election timeout."""
        if p == self.id:
            return self.role is Role.LEADER
        pr = self.progress.get(p)
        return pr is not None and pr.state is ProgressState.REPLICATE and pr.idle < self.election_ticks

    def read_index(self, context: bytes) -> NotLeader | None:
        """Ask for the leader's commit index (ZooKeeper `sync`, linearizable reads).

        The answer arrives later as a `ReadState(context, index)` in a Ready:
        wait until applied >= index. `context` must be unique per request.
        Returns NotLeader when no leader is known (retry later); the request
        may also be lost with a message or a leader change, so the shell
        retries on a timeout with a fresh context.
        """
        context = bytes(context)
        if self.role is Role.LEADER:
            self._leader_read_index(self.id, context)
            return None
        if self.leader is None:
            return NotLeader(None, "no leader known")
        self._send(MT.READ_INDEX, self.leader, context=context)
        return None

    def peer_unreachable(self, peer: int) -> None:
        """The shell lost its connection to `peer` (e.g. the process died).

        A hint, never trusted for safety: if `peer` is our leader, forget it
        and campaign within a few ticks instead of a whole election timeout.
        Followers are staggered by their rank among the other members (the
        lowest id first, two ticks apart), so that the two followers of a
        3-member ensemble that lost the same leader rarely split the vote.
        Pre-vote still applies: if the leader is in fact alive, the members
        that hear from it refuse the pre-vote and nothing is disrupted.
        """
        if self.role is not Role.FOLLOWER or self.leader != peer:
            return
        self.leader = None
        others = sorted(self.voters - {peer})
        if self.id not in others:
            return  # not a voter: it never campaigns
        wait = 1 + 2 * others.index(self.id)
        self.election_elapsed = max(self.election_elapsed, self.randomized_timeout - wait)

    def compact(self, index: int, snapshot_data: bytes) -> Snapshot:
        """Replace log entries up to `index` (<= applied) with a snapshot of the
        state machine at `index`. The shell persists the returned snapshot and
        may then drop those entries from its WAL."""
        snap = self.log.compact(index, bytes(snapshot_data))
        self._sync_conf()
        return snap

    def report_snapshot(self, to: int, failed: bool) -> None:
        """The shell tells the leader whether sending a snapshot to `to` failed
        (a broken connection); a failed one is retried by probing again."""
        pr = self.progress.get(to) if self.role is Role.LEADER else None
        if pr is not None and pr.state is ProgressState.SNAPSHOT and failed:
            pr.pending_snapshot = 0
            pr.become_probe()

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        # Field by field rather than building SoftState/HardState: called several times per turn.
        # (Role is a StrEnum: it compares equal to the soft state's role string as it is.)
        soft, hard, log = self._prev_soft, self._prev_hard, self.log
        committed = log.committed
        return (
            self._broadcast_pending
            or bool(self.msgs)
            or bool(self.read_states)
            or self.term != hard.term
            or self.vote != hard.vote
            or committed != hard.commit
            or self.role != soft.role
            or self.leader != soft.leader
            or self.term != soft.term
            or log.pending_snapshot is not None
            or log.stabled < log.last_index()
            or committed > max(log.applied, log.offset)
        )

    def ready(self) -> Ready:
        """Collect what the shell must persist, send and apply (see Ready).

        Call it again only after `advance()`: a second Ready before that would
        hand out the same committed entries twice."""
        if self._outstanding is not None:
            raise RuntimeError("ready() called again before advance() of the previous Ready")
        self._flush_broadcast()
        log = self.log
        # Field by field, as in has_ready: the states are built only when they changed.
        prev_soft, prev_hard = self._prev_soft, self._prev_hard
        soft = (
            self.soft_state()
            if self.role != prev_soft.role or self.leader != prev_soft.leader or self.term != prev_soft.term
            else None
        )
        hard = (
            self.hard_state()
            if self.term != prev_hard.term or self.vote != prev_hard.vote or log.committed != prev_hard.commit
            else None
        )
        if self.msgs:
            msgs = _coalesce_acks(self.msgs)
            late = [m for m in msgs if m.type not in EARLY_TYPES]
            early = [m for m in msgs if m.type in EARLY_TYPES]
            self.msgs = []
        else:
            late, early = [], []
        entries = log.unstable_entries()
        snapshot = log.pending_snapshot
        rd = Ready(
            soft_state=soft,
            hard_state=hard,
            entries=entries,
            snapshot=snapshot,
            committed_entries=log.next_committed_entries(),
            messages=late,
            read_states=self.read_states,
            early_messages=early,
            must_sync=must_sync(prev_hard, hard, bool(entries), snapshot is not None),
        )
        self.read_states = []
        if entries and self.role is Role.LEADER and self.durable_commit:
            # Sent after this Ready is persisted and synced (the Ready contract), so it is a promise.
            last = entries[-1].index
            rd.messages.extend(
                Message(type=MT.DURABLE, frm=self.id, to=p, term=self.term, index=last)
                for p in sorted(self.voters - {self.id})
            )
            self._durable_sent = True
        if soft is not None:
            self._prev_soft = soft
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The shell has persisted, sent and applied everything in `rd`."""
        if rd is not self._outstanding:
            raise RuntimeError("advance() must be given the Ready that the last ready() returned")
        self._outstanding = None
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            if self.log.pending_snapshot == rd.snapshot:
                self.log.pending_snapshot = None
            self.log.applied = max(self.log.applied, rd.snapshot.meta.index)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            if self.role is Role.FOLLOWER:
                # These entries are on our disk before anything that follows from this
                # Ready leaves (the Ready contract): they may now count (see _leader_durable).
                self._commit_durable()
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.role.value, self.leader, self.term)

    def status(self) -> dict:
        """A summary for four-letter words and the admin API."""
        return {
            "id": self.id,
            "role": self.role.value,
            "term": self.term,
            "leader": self.leader,
            "last_index": self.log.last_index(),
            "last_zxid": self.log.last_zxid(),
            "commit": self.log.committed,
            "applied": self.log.applied,
            "snapshot_index": self.log.offset,
            "voters": sorted(self.voters),
            "learners": sorted(self.learners),
            "conf_index": self.conf_index,
        }

    # -- membership -------------------------------------------------------------------------

    @property
    def durable_commit(self) -> bool:
        """Two voters are a quorum (2 or 3 voters): followers commit on the leader's DURABLE word."""
        return self.id in self.voters and len(self.voters) in (2, 3)

    def _sync_conf(self) -> None:
        """Adopt the latest configuration in the log (after appending, truncating, restoring, compacting)."""
        log = self.log
        index, conf = log.conf_entry_at(log.last_index())
        if (log.conf_epoch, index) == self._conf_seen:
            return
        self._conf_seen = (log.conf_epoch, index)
        self.conf_index, self.conf = index, conf
        self.voters = frozenset(conf.voters)
        self.learners = frozenset(conf.learners)
        if self.role is Role.LEADER:
            self._sync_progress()

    @property
    def peers_to_contact(self) -> frozenset[int]:
        """The ids this node may send to: the members, and (as leader) recently removed ones."""
        return (self.voters | self.learners | frozenset(self._departing)) - {self.id}

    def _sync_progress(self) -> None:
        members = self.voters | self.learners
        last = self.log.last_index()
        for p in members:
            if self._departing.pop(p, None) is not None or p not in self.progress:
                # New, or back after a removal (possibly with a fresh disk under the same id):
                # nothing it acknowledged before counts, probe it from our end.
                self.progress[p] = Progress(match=0, next=last + 1)
        for p in list(self.progress):
            if p not in members and p != self.id and p not in self._departing:
                self._departing[p] = [self.conf_index, 0]

    def _tick_departing(self) -> None:
        # A removed member is still sent the log until an election timeout after its removal
        # committed, so that it can learn of it (the shell stops a member that applied its own
        # removal); its acknowledgements never count.
        for p, state in list(self._departing.items()):
            if self.log.committed >= state[0]:
                state[1] += 1
                if state[1] >= self.election_ticks:
                    del self._departing[p]
                    self.progress.pop(p, None)

    # -- roles ------------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.election_ticks + self.rng.randrange(self.election_ticks)
        self.votes = {}
        self.pending_reads = []
        self.deferred_reads = []
        self._broadcast_pending = False
        self._leader_durable_index = 0
        self._durable_sent = False
        self._departing = {}

    def _become_follower(self, term: int, leader: int | None) -> None:
        if self.role is Role.LEADER and self.fp.active:
            self.fp.hit("step-down")  # TEST-ONLY failpoint (panic or sleep; error is not allowed here)
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader
        self._step = self._step_follower
        self._tick = self._tick_election

    def _become_pre_candidate(self) -> None:
        # Term and vote stay as they are: a failed pre-campaign leaves no trace.
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.leader = None
        self._step = self._step_candidate
        self._tick = self._tick_election

    def _become_candidate(self) -> None:
        if self.term >= MAX_TERM:
            # The term is the zxid epoch and must fit 32 bits; refuse to go on
            # rather than produce zxids that would collide.
            return
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._step = self._step_candidate
        self._tick = self._tick_election

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        last = self.log.last_index()
        self.progress = {p: Progress(match=0, next=last + 1) for p in self.voters | self.learners}
        self.progress[self.id] = Progress(match=last, next=last + 1, state=ProgressState.REPLICATE, recent_active=True)
        # The no-op lets this leader commit entries of earlier terms (Raft only
        # commits by counting replicas of a current-term entry) and marks the
        # start of the epoch: its zxid is (term << 32) | 0, like ZooKeeper's
        # NEWLEADER zxid, so the first client transaction gets counter 1.
        self.zxid_counter = -1
        self._append_entry(EntryKind.NOOP, b"")

    # -- elections --------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        # A sole voter has nobody to wait for: it elects itself on its first tick.
        if self.election_elapsed >= self.randomized_timeout or len(self.voters) == 1:
            self.election_elapsed = 0
            if self._may_campaign():
                self._campaign(pre=self.pre_vote)
            else:
                # Not allowed to campaign, but no word from the leader for an election timeout:
                # forget it, or we would stay "in lease" and ignore every candidate forever.
                self.leader = None

    def _campaign(self, pre: bool) -> None:
        if self.fp.active and self.fp.hit("campaign"):
            # TEST-ONLY failpoint error: give up this campaign, wait for the next timeout
            if self.role is not Role.FOLLOWER:
                self._become_follower(self.term, None)
            return
        if pre:
            self._become_pre_candidate()
            vote_type, term = MT.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            if self.role is not Role.CANDIDATE:
                return
            vote_type, term = MT.VOTE, self.term
        # The randomized timeout also paces pre-campaigns.
        self.randomized_timeout = self.election_ticks + self.rng.randrange(self.election_ticks)
        self.election_elapsed = 0
        if self._record_vote(self.id, True) == "won":
            self._on_election_won()
            return
        for p in sorted(self.voters - {self.id}):
            self.msgs.append(
                Message(
                    type=vote_type,
                    frm=self.id,
                    to=p,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                )
            )

    def _on_election_won(self) -> None:
        if self.role is Role.PRE_CANDIDATE:
            self._campaign(pre=False)
        elif self.fp.active and self.fp.hit("become-leader"):
            # TEST-ONLY failpoint error: decline; our vote stays ours, so no one else wins this term
            self._become_follower(self.term, None)
        else:
            self._become_leader()

    def _record_vote(self, voter: int, granted: bool) -> str:
        self.votes.setdefault(voter, granted)
        yes = sum(1 for p, v in self.votes.items() if v and p in self.voters)
        no = sum(1 for p, v in self.votes.items() if not v and p in self.voters)
        q = self._quorum()
        if yes >= q:
            return "won"
        if no >= q:
            return "lost"
        return "pending"

    def _handle_vote_request(self, m: Message) -> None:
        is_pre = m.type is MT.PRE_VOTE
        can_vote = (
            self.vote == m.frm or (self.vote is None and self.leader is None) or (is_pre and m.term > self.term)
        ) and bool(self.conf.voters)
        # A server that knows no configuration at all -- a joiner the leader has not reached yet,
        # in particular a removed member wiped and started again under its old id -- grants no
        # vote: a candidate still counting that id under an old configuration must not get the
        # vote its former, now lost, self would have refused. Refusing a vote is always safe.
        resp = MT.PRE_VOTE_RESP if is_pre else MT.VOTE_RESP
        # TEST-ONLY FAULT vote-ignores-log: the election restriction is skipped
        if can_vote and (self.unsafe_fault == "vote-ignores-log" or self.log.is_up_to_date(m.index, m.log_term)):
            # Grants carry the candidate's term so it can count them; a
            # pre-vote grant changes nothing here.
            self.msgs.append(Message(type=resp, frm=self.id, to=m.frm, term=m.term))
            if not is_pre:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(resp, m.frm, reject=True)

    def _may_campaign(self) -> bool:
        """A voter campaigns; so does a member whose removal is in its log but not committed.

        Learners, joiners and members whose removal committed never do. The
        exception keeps a cluster live when a leader that removes itself loses
        leadership before the change commits: it may hold the only copies of
        the new configuration, and the other voters cannot outvote its longer
        log. It campaigns counting the new configuration's voters (not
        itself), and as leader commits the change and steps down, as the
        thesis lets a removed leader manage the cluster until then."""
        if self.id in self.voters:
            return True
        if self.conf_index <= self.log.committed or self.conf_index <= self.log.offset:
            return False
        return self.id in self.log.conf_at(self.conf_index - 1).voters

    def _step_candidate(self, m: Message) -> None:
        expected = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            # Someone already won this term.
            self._become_follower(m.term, m.frm)
            self._step_follower(m)
        elif m.type is expected:
            outcome = self._record_vote(m.frm, not m.reject)
            if outcome == "won":
                self._on_election_won()
            elif outcome == "lost":
                self._become_follower(self.term, None)
        # Anything else (late responses, read requests) has no leader to serve it.

    # -- follower ---------------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        if m.type is MT.APPEND:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_append(m)
        elif m.type is MT.HEARTBEAT:
            self.election_elapsed = 0
            self.leader = m.frm
            self.log.commit_to(m.commit)
            self._send(MT.HEARTBEAT_RESP, m.frm, context=m.context)
        elif m.type is MT.SNAPSHOT:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_snapshot(m)
        elif m.type is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.context, m.index))
        elif m.type is MT.DURABLE:
            self.election_elapsed = 0
            self.leader = m.frm
            self._leader_durable(m.index)
        elif m.type is MT.READ_INDEX:
            # We are not the leader; the asker will time out and retry.
            pass

    def _leader_durable(self, index: int) -> None:
        """Commit what the leader and this follower both hold on disk, when two is a quorum.

        With three members (quorum two) an entry of the current term on the
        leader's disk and on ours is on a majority: it is committed, whether
        or not the leader has counted our acknowledgement yet. Our entries up
        to `stabled` are on disk before anything that follows from this commit
        leaves the process (they were handed out in a Ready, and the Ready
        contract persists before it sends or answers; `advance` re-checks when
        new entries become stable); the leader's up to `index` are (DURABLE is
        a message of a Ready, so it leaves only after the leader's fsync). An entry of our current term
        at index i was written by this term's leader, so by Log Matching our
        log up to i is the leader's. This saves a round trip per write: the
        follower a client is connected to can answer once its own fsync is
        done and the leader's DURABLE has arrived, without waiting for the
        leader to collect acknowledgements and send the new commit index.
        """
        if not self.durable_commit:
            return
        self._leader_durable_index = max(self._leader_durable_index, index)
        self._commit_durable()

    def _commit_durable(self) -> None:
        i = min(self._leader_durable_index, self.log.stabled)
        if i > self.log.committed and self.log.term(i) == self.term:
            self.log.commit_to(i)

    def _handle_append(self, m: Message) -> None:
        self.leader_commit = max(self.leader_commit, m.commit)
        if m.index < self.log.committed:
            self._send(MT.APPEND_RESP, m.frm, index=self.log.committed)
            return
        if not _entries_well_formed(m):
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        self._sync_conf()
        if last_new is not None:
            self._send(MT.APPEND_RESP, m.frm, index=last_new)
            return
        hint_index, hint_term = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._send(MT.APPEND_RESP, m.frm, index=m.index, reject=True, reject_hint=hint_index, log_term=hint_term)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None:
            return
        meta = snap.meta
        if meta.index <= self.log.committed:
            self._send(MT.APPEND_RESP, m.frm, index=self.log.committed)
            return
        if self.log.match_term(meta.index, meta.term):
            # We already hold that prefix: just learn that it is committed.
            self.log.commit_to(meta.index)
        elif self.fp.active and self.fp.hit("snapshot-install"):
            return  # TEST-ONLY failpoint error: refused unanswered; the leader resends after a timeout
        else:
            self.log.restore(snap)
            self._sync_conf()
        self._send(MT.APPEND_RESP, m.frm, index=self.log.last_index())

    # -- leader -----------------------------------------------------------------------------

    def _tick_heartbeat(self) -> None:
        if self.id not in self.voters and self.log.committed >= self.conf_index:
            # The configuration without us is committed: our job is done (Raft thesis §4.2.2;
            # the Ready before this tick carried the commit index). Until then we led a
            # cluster we are not part of, counting only its voters.
            self._become_follower(self.term, None)
            return
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        self._tick_departing()
        for pr in self.progress.values():
            pr.idle += 1
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_elapsed += 1
                if pr.snapshot_elapsed >= self.election_ticks:
                    # No ack within an election timeout: assume the snapshot
                    # was lost and probe again (which resends it if needed).
                    pr.pending_snapshot = 0
                    pr.become_probe()
        if self.election_elapsed >= self.election_ticks:
            self.election_elapsed = 0
            if self.check_quorum:
                active = sum(
                    1 for p in self.voters if p == self.id or (p in self.progress and self.progress[p].recent_active)
                )
                if active < self._quorum():
                    # We may be on the minority side of a partition: stop
                    # accepting writes and reads that could never commit.
                    self._become_follower(self.term, None)
                    return
                for p, pr in self.progress.items():
                    pr.recent_active = p == self.id
        if self.heartbeat_elapsed >= self.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            # Carry the newest pending read so that a lost read heartbeat is
            # retried; its quorum of acks also confirms every earlier read.
            self._broadcast_heartbeat(self.pending_reads[-1].context if self.pending_reads else b"")

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.frm)
        if pr is None:
            return
        pr.idle = 0
        if m.type is MT.APPEND_RESP:
            pr.recent_active = True
            self._handle_append_resp(m, pr)
        elif m.type is MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._ack_read(m.frm, m.context)
        elif m.type is MT.READ_INDEX:
            self._leader_read_index(m.frm, m.context)

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.index > self.log.last_index():
            return  # acknowledges entries we never sent: a broken peer
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if m.reject_hint < pr.match and m.index == pr.next - 1:
                # The follower's log ends below what it acknowledged: it lost it (a removed member
                # started again under its id with an empty disk, still sent the log as a departing
                # one). Probing from our `match` would bounce forever; start from what it has.
                pr.match = m.reject_hint
                pr.become_probe()
                self._send_append(m.frm)
                return
            if pr.maybe_decrease(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return
        if not pr.maybe_update(m.index):
            # A duplicate or late ack: it still proves the follower is there.
            if pr.state is ProgressState.PROBE and pr.probe_sent:
                pr.probe_sent = False
                self._send_append(m.frm)
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        if self._maybe_commit():
            self._release_deferred_reads()
            if not self.durable_commit or self.learners:
                # The new commit index goes out with the next Ready (learners hear no DURABLE).
                self._broadcast_pending = True
            # With three members the followers commit by DURABLE on their own (see
            # _leader_durable); the next append or heartbeat carries the index anyway.
        elif pr.next <= self.log.last_index():
            self._send_append(m.frm)

    def _maybe_commit(self) -> bool:
        # Only the voters of the configuration in force count (the leader itself only if it is one).
        voters, progress = self.voters, self.progress
        if len(voters) == 1:  # a sole voter: its own match is the quorum's (no sort per entry)
            pr = progress.get(next(iter(voters)))
            if pr is None:
                return False
            index = pr.match
        else:
            quorum = len(voters) // 2 + 1
            matches = sorted((progress[p].match for p in voters if p in progress), reverse=True)
            if len(matches) < quorum:
                return False
            index = matches[quorum - 1]
        log = self.log
        # Only entries of the current term commit by counting (Raft §5.4.2);
        # earlier ones commit with them.
        if index > log.committed and log.term(index) == self.term:
            return log.commit_to(index)
        return False

    def _append_entry(self, kind: EntryKind, data: bytes) -> int:
        self.zxid_counter += 1
        log = self.log
        index = log.last_index() + 1
        term = self.term
        log.append([Entry(term, index, make_zxid(term, self.zxid_counter), kind, data)])
        if kind is EntryKind.CONF:
            self._sync_conf()
        me = self.progress[self.id]
        me.maybe_update(index)
        if self.unsafe_commit_without_quorum:
            log.commit_to(index)  # TEST-ONLY BUG, see the class docstring
        elif self._maybe_commit() and self.deferred_reads:
            self._release_deferred_reads()
        self._broadcast_pending = True
        return index

    def _flush_broadcast(self) -> None:
        """Send what _broadcast_pending deferred: one append per follower carrying every
        entry it lacks (up to max_entries) and the current commit index."""
        if self._broadcast_pending:
            self._broadcast_pending = False
            if self.role is Role.LEADER:
                self._broadcast_append()

    def _broadcast_append(self) -> None:
        for p in sorted(self.progress):
            if p != self.id:
                self._send_append(p)

    def _broadcast_heartbeat(self, context: bytes) -> None:
        for p in sorted(self.progress):
            if p == self.id:
                continue
            pr = self.progress[p]
            # Never tell a follower to commit past what it is known to hold.
            commit = min(pr.match, self.log.committed)
            if self.unsafe_fault == "heartbeat-commit-beyond-match":
                commit = self.log.committed  # TEST-ONLY FAULT: whatever the follower holds
            self.msgs.append(
                Message(type=MT.HEARTBEAT, frm=self.id, to=p, term=self.term, commit=commit, context=context)
            )

    def _send_append(self, to: int) -> None:
        pr = self.progress[to]
        if pr.state is ProgressState.SNAPSHOT or (pr.state is ProgressState.PROBE and pr.probe_sent):
            return
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None or prev < self.log.offset:
            self._send_snapshot(to, pr)
            return
        entries = self.log.slice(pr.next, pr.next + self.max_entries)
        self.msgs.append(
            Message(
                type=MT.APPEND,
                frm=self.id,
                to=to,
                term=self.term,
                index=prev,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        if pr.state is ProgressState.REPLICATE:
            if entries:
                pr.next = entries[-1].index + 1
        else:
            pr.probe_sent = True

    def _send_snapshot(self, to: int, pr: Progress) -> None:
        snap = self.log.snapshot
        pr.become_snapshot(snap.meta.index)
        if self.fp.active and self.fp.hit("snapshot-send"):
            return  # TEST-ONLY failpoint error: lost; probed again once snapshot_elapsed runs out
        self.msgs.append(Message(type=MT.SNAPSHOT, frm=self.id, to=to, term=self.term, snapshot=snap))

    # -- read index -------------------------------------------------------------------------

    def _leader_read_index(self, frm: int, context: bytes) -> None:
        if self.log.term(self.log.committed) != self.term:
            # Until our no-op commits we don't know the true commit index:
            # entries of earlier terms may be committed without our knowing it.
            self.deferred_reads.append((frm, context))
            return
        if self.voters == {self.id} or self.unsafe_fault == "read-index-no-quorum":
            # (TEST-ONLY FAULT read-index-no-quorum: no heartbeat round confirms we still lead)
            self._answer_read(_ReadRequest(context, self.log.committed, frm))
            return
        if any(r.context == context for r in self.pending_reads):
            return
        self.pending_reads.append(_ReadRequest(context, self._read_point(), frm, {self.id}))
        self._broadcast_heartbeat(context)

    def _read_point(self) -> int:
        """The index a read must wait for: everything that may be committed now.

        Normally the commit index. With three members a follower may commit an
        entry before we know it (see _leader_durable) and answer its client; a
        later read must see that write, so the read waits for our whole log
        (which holds every committed entry, by Leader Completeness).
        """
        if self.durable_commit or self._durable_sent:
            return self.log.last_index()
        return self.log.committed

    def _release_deferred_reads(self) -> None:
        deferred, self.deferred_reads = self.deferred_reads, []
        for frm, ctx in deferred:
            self._leader_read_index(frm, ctx)

    def _ack_read(self, frm: int, context: bytes) -> None:
        for i, req in enumerate(self.pending_reads):
            if req.context == context:
                req.acks.add(frm)
                if len(req.acks & self.voters) >= self._quorum():
                    # A quorum still follows us, so no newer leader existed when
                    # this request (and every earlier one) was taken.
                    done, self.pending_reads = self.pending_reads[: i + 1], self.pending_reads[i + 1 :]
                    for r in done:
                        self._answer_read(r)
                return

    def _answer_read(self, req: _ReadRequest) -> None:
        if req.frm == self.id:
            self.read_states.append(ReadState(req.context, req.index))
        else:
            self.msgs.append(
                Message(
                    type=MT.READ_INDEX_RESP,
                    frm=self.id,
                    to=req.frm,
                    term=self.term,
                    index=req.index,
                    context=req.context,
                )
            )

    # -- helpers ----------------------------------------------------------------------------

    def _quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def _in_lease(self) -> bool:
        return self.check_quorum and self.leader is not None and self.election_elapsed < self.election_ticks

    def _send(self, mtype: MT, to: int, **fields) -> None:
        self.msgs.append(Message(type=mtype, frm=self.id, to=to, term=self.term, **fields))


def _coalesce_acks(msgs: list[Message]) -> list[Message]:
    """Keep only the newest of the successful append acks to each peer.

    A follower that handled several appends before one Ready acknowledges each;
    an ack of index i says its log matches the leader's up to i, so a later ack
    of a higher index in the same term says everything the earlier one did.
    Dropping the earlier one is the same as losing it on the wire, which Raft
    tolerates; it saves the leader one message per entry. Rejections and
    every other kind of message are kept as they are, in order.
    """
    if len(msgs) < 2:
        return msgs
    out: list[Message | None] = []
    last_ack: dict[int, int] = {}  # peer -> position in out of its pending ack
    for m in msgs:
        if m.type is MT.APPEND_RESP and not m.reject:
            pos = last_ack.get(m.to)
            if pos is not None:
                prev = out[pos]
                assert prev is not None
                if prev.term == m.term and prev.index <= m.index:
                    out[pos] = None
            last_ack[m.to] = len(out)
        out.append(m)
    return [m for m in out if m is not None]


def _entries_well_formed(m: Message) -> bool:
    """Entries in an append must be consecutive after m.index and not newer than
    the sender's term; anything else is a broken or hostile peer: ignore it."""
    expected = m.index + 1
    for e in m.entries:
        if e.index != expected or e.term > m.term:
            return False
        expected += 1
    return True
