"""A small deterministic network of RaftNode cores for tests.

Plays the shell's part by the Ready contract (persist, then send, then apply,
then advance) over an in-memory "disk" per node, and checks Raft's safety
invariants every time something changes:

- election safety: at most one leader per term, ever;
- log matching: two persisted entries with the same (index, term) are the same
  entry and follow the same previous term; zxids increase along every log;
- leader completeness: a new leader holds every entry known to be committed;
- state machine safety: an index, once committed anywhere, never holds another
  entry; every node applies the same sequence (snapshots included).

A violation raises `Violation` naming the seed, so a failure replays exactly.
Everything random comes from one `random.Random(seed)`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from node.consensus import (
    ConfState,
    Entry,
    HardState,
    Message,
    PersistentState,
    RaftNode,
    ReadState,
    Role,
    Snapshot,
    unpack_snapshot_data,
)


class Violation(AssertionError):
    """A Raft safety invariant was broken."""


class LivenessFailure(AssertionError):
    """A healed cluster did not make progress within the bound."""


@dataclass
class Disk:
    hard_state: HardState = HardState()
    snapshot: Snapshot = Snapshot()
    entries: list[Entry] = field(default_factory=list)

    def persistent_state(self) -> PersistentState:
        return PersistentState(self.hard_state, self.snapshot, tuple(self.entries))


def encode_sm(seq: list[tuple[int, bytes]]) -> bytes:
    """The test state machine is the applied sequence itself: (zxid, data) per index."""
    return b"\n".join(b"%d:%s" % (z, d.hex().encode()) for z, d in seq)


def decode_sm(blob: bytes) -> list[tuple[int, bytes]]:
    """The applied sequence a snapshot's data holds (behind the configuration the core records)."""
    _conf, blob = unpack_snapshot_data(blob)
    if not blob:
        return []
    out = []
    for line in blob.split(b"\n"):
        z, d = line.split(b":")
        out.append((int(z), bytes.fromhex(d.decode())))
    return out


class Net:
    def __init__(
        self,
        n: int,
        seed: int = 0,
        *,
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        unsafe_commit_without_quorum: bool = False,
        max_entries_per_message: int = 64,
        wire_roundtrip: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.ids = list(range(1, n + 1))
        self.opts = dict(
            election_ticks=election_ticks,
            heartbeat_ticks=heartbeat_ticks,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            unsafe_commit_without_quorum=unsafe_commit_without_quorum,
            max_entries_per_message=max_entries_per_message,
        )
        self.wire_roundtrip = wire_roundtrip
        self.disks = {i: Disk() for i in self.ids}
        self.nodes: dict[int, RaftNode | None] = {i: None for i in self.ids}
        self.sm: dict[int, list[tuple[int, bytes]]] = {i: [] for i in self.ids}
        self.reads: dict[int, list[ReadState]] = {i: [] for i in self.ids}
        self.inflight: list[Message] = []
        self.cut: set[tuple[int, int]] = set()
        self.delivered = 0
        # invariant bookkeeping, global across crashes
        self.leaders_by_term: dict[int, int] = {}
        self.committed: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, zxid, data)
        self.applied: list[tuple[int, bytes]] = []  # the one applied sequence (index-1 -> entry)
        self.by_index_term: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}
        self.checked_commit: dict[int, int] = {i: 0 for i in self.ids}
        # read context -> highest index known committed (and so possibly
        # acknowledged to a client) when the read was asked: sync must not
        # answer with less
        self.read_floor: dict[bytes, int] = {}
        self.founders = list(self.ids)
        self.joiners: set[int] = set()  # started with no configuration: they wait to be added
        self.wipe_prob = 0.5  # random_conf_change: how often a re-added server comes back with an empty disk
        for i in self.ids:
            self.start(i)

    # -- lifecycle --------------------------------------------------------------------------

    def fail(self, what: str) -> None:
        raise Violation(f"seed {self.seed}: {what}")

    def start(self, i: int) -> None:
        disk = self.disks[i]
        node_rng = random.Random(self.rng.getrandbits(64))
        bootstrap = ConfState(()) if i in self.joiners else ConfState(tuple(self.founders))
        self.nodes[i] = RaftNode(i, self.founders, disk.persistent_state(), node_rng, bootstrap=bootstrap, **self.opts)
        self.sm[i] = decode_sm(disk.snapshot.data)
        self.checked_commit[i] = disk.snapshot.meta.index

    def add_server(self, i: int) -> None:
        """A new server, started as a joiner (no configuration until the leader adds it)."""
        assert i not in self.ids, f"server {i} exists"
        self.ids.append(i)
        self.joiners.add(i)
        self.disks[i] = Disk()
        self.nodes[i] = None
        self.sm[i] = []
        self.reads[i] = []
        self.checked_commit[i] = 0
        self.start(i)

    def wipe(self, i: int) -> None:
        """Restart server i with an empty disk, as a joiner (its earlier state is gone)."""
        self.joiners.add(i)
        self.disks[i] = Disk()
        self.sm[i] = []
        self.checked_commit[i] = 0
        self.crash(i)
        self.start(i)

    def crash(self, i: int) -> None:
        """Lose everything not on this node's disk (including unsent messages)."""
        self.nodes[i] = None

    def live(self) -> list[int]:
        return [i for i in self.ids if self.nodes[i] is not None]

    def node(self, i: int) -> RaftNode:
        n = self.nodes[i]
        assert n is not None, f"node {i} is crashed"
        return n

    # -- network ----------------------------------------------------------------------------

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut |= {(i, j), (j, i)}

    def partition(self, *groups: list[int]) -> None:
        self.cut = set()
        side = {i: g for g, members in enumerate(groups) for i in members}
        for a in self.ids:
            for b in self.ids:
                if a != b and side.get(a, -1) != side.get(b, -2):
                    self.cut.add((a, b))

    def heal(self) -> None:
        self.cut = set()

    def deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or (m.frm, m.to) in self.cut:
            return
        if self.wire_roundtrip:
            m2 = Message.from_bytes(m.to_bytes())
            if m2 != m:
                self.fail(f"message codec round trip changed {m} into {m2}")
            m = m2
        self.delivered += 1
        node.step(m)
        self.check_roles()

    # -- the shell's part of the Ready contract --------------------------------------------

    def process_ready(self, i: int) -> bool:
        node = self.nodes[i]
        if node is None or not node.has_ready():
            return False
        rd = node.ready()
        disk = self.disks[i]
        # 1. persist
        if rd.snapshot is not None:
            disk.snapshot = rd.snapshot
            disk.entries = []
        if rd.entries:
            first = rd.entries[0].index
            disk.entries = [e for e in disk.entries if e.index < first]
            if (
                disk.entries
                and disk.entries[-1].index != first - 1
                or (not disk.entries and first != disk.snapshot.meta.index + 1)
            ):
                self.fail(f"node {i}: Ready entries starting at {first} leave a gap on disk")
            for e in rd.entries:
                self.check_persisted_entry(i, disk, e)
                disk.entries.append(e)
        if rd.hard_state is not None:
            disk.hard_state = rd.hard_state
        # 2. send (the early ones may leave before the fsync; the disk here is always synced)
        self.inflight.extend(rd.early_messages + rd.messages)
        # 3. apply
        if rd.snapshot is not None:
            seq = decode_sm(rd.snapshot.data)
            if len(seq) != rd.snapshot.meta.index:
                self.fail(f"node {i}: snapshot at {rd.snapshot.meta.index} holds {len(seq)} entries")
            self.check_applied_prefix(i, seq)
            self.sm[i] = seq
        for e in rd.committed_entries:
            if e.index != len(self.sm[i]) + 1:
                self.fail(f"node {i}: applies index {e.index} after {len(self.sm[i])}")
            self.sm[i].append((e.zxid, e.data))
            self.check_applied_prefix(i, self.sm[i][-1:], start=e.index)
        for rs in rd.read_states:
            floor = self.read_floor.get(rs.context, 0)
            if rs.index < floor:
                self.fail(
                    f"node {i}: read {rs.context!r} answered index {rs.index}, "
                    f"but {floor} was committed before it was asked"
                )
        self.reads[i].extend(rd.read_states)
        node.advance(rd)
        if node.log.applied != len(self.sm[i]):
            self.fail(f"node {i}: core says applied={node.log.applied}, state machine has {len(self.sm[i])}")
        self.check_commits(i)
        self.check_roles()
        return True

    def compact(self, i: int) -> None:
        node = self.node(i)
        idx = node.log.applied
        if idx <= node.log.offset:
            return
        snap = node.compact(idx, encode_sm(self.sm[i][:idx]))
        disk = self.disks[i]
        disk.snapshot = snap
        disk.entries = [e for e in disk.entries if e.index > idx]

    # -- invariants -------------------------------------------------------------------------

    def check_roles(self) -> None:
        for i in self.ids:
            n = self.nodes[i]
            if n is not None and n.role is Role.LEADER:
                other = self.leaders_by_term.setdefault(n.term, i)
                if other != i:
                    self.fail(f"election safety: nodes {other} and {i} both lead term {n.term}")
                if getattr(n, "_checked_completeness", None) != n.term:
                    n._checked_completeness = n.term  # type: ignore[attr-defined]
                    self.check_leader_completeness(i, n)

    def check_leader_completeness(self, i: int, n: RaftNode) -> None:
        for idx, (term, _z, _d) in self.committed.items():
            if idx <= n.log.offset:
                continue
            if n.log.term(idx) != term:
                self.fail(
                    f"leader completeness: leader {i} of term {n.term} lacks committed entry "
                    f"{idx} (term {term}); has term {n.log.term(idx)}"
                )

    def check_persisted_entry(self, i: int, disk: Disk, e: Entry) -> None:
        prev_zxid = disk.entries[-1].zxid if disk.entries else disk.snapshot.meta.zxid
        prev_term = disk.entries[-1].term if disk.entries else disk.snapshot.meta.term
        if e.zxid <= prev_zxid and e.index > 1:
            self.fail(f"node {i}: zxid {e.zxid:#x} at {e.index} does not increase (previous {prev_zxid:#x})")
        if e.zxid >> 32 != e.term:
            self.fail(f"node {i}: entry {e.index} has zxid epoch {e.zxid >> 32} but term {e.term}")
        key = (e.index, e.term)
        seen = self.by_index_term.setdefault(key, (e.zxid, e.data, prev_term))
        if seen != (e.zxid, e.data, prev_term):
            self.fail(f"log matching: node {i} holds a different entry at index {e.index} term {e.term}")

    def check_commits(self, i: int) -> None:
        n = self.node(i)
        lo = max(self.checked_commit[i], n.log.offset) + 1
        for idx in range(lo, n.log.committed + 1):
            e = n.log.entry(idx)
            assert e is not None
            rec = (e.term, e.zxid, e.data)
            seen = self.committed.setdefault(idx, rec)
            if seen != rec:
                self.fail(f"state machine safety: node {i} committed {rec} at {idx}, but {seen} was committed there")
        self.checked_commit[i] = max(self.checked_commit[i], n.log.committed)

    def check_applied_prefix(self, i: int, seq: list[tuple[int, bytes]], start: int = 1) -> None:
        for k, item in enumerate(seq):
            idx = start + k
            if idx <= len(self.applied):
                if self.applied[idx - 1] != item:
                    self.fail(f"node {i} applied {item} at {idx}, another node applied {self.applied[idx - 1]}")
            elif idx == len(self.applied) + 1:
                self.applied.append(item)
            else:
                self.fail(f"node {i} applied index {idx} before anyone applied {len(self.applied) + 1}")

    # -- drivers for scripted tests ---------------------------------------------------------

    def tick(self, *ids: int) -> None:
        for i in ids or self.live():
            if self.nodes[i] is not None:
                self.node(i).tick()
        self.check_roles()

    def stabilize(self, max_rounds: int = 10_000, drop: Callable[[Message], bool] | None = None) -> None:
        """Process readies and deliver every message (in send order) until quiet;
        messages for which `drop` says True are lost."""
        for _ in range(max_rounds):
            progressed = False
            for i in self.ids:
                progressed |= self.process_ready(i)
            if self.inflight:
                batch, self.inflight = self.inflight, []
                for m in batch:
                    if drop is None or not drop(m):
                        self.deliver(m)
                progressed = True
            if not progressed:
                return
        raise LivenessFailure(f"seed {self.seed}: network did not quiesce in {max_rounds} rounds")

    def run_ticks(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()
            self.stabilize()

    def leaders(self) -> list[int]:
        return [i for i in self.live() if self.node(i).role is Role.LEADER]

    def leader(self) -> int | None:
        """The live leader of the highest term, if any."""
        ls = sorted(self.leaders(), key=lambda i: self.node(i).term)
        return ls[-1] if ls else None

    def elect(self, max_ticks: int = 500) -> int:
        for _ in range(max_ticks):
            lead = self.leader()
            if lead is not None and all(self.node(i).leader == lead for i in self.live() if (lead, i) not in self.cut):
                return lead
            self.tick()
            self.stabilize()
        raise LivenessFailure(f"seed {self.seed}: no leader after {max_ticks} ticks")

    def read_index(self, i: int, context: bytes):
        self.read_floor[context] = max(self.committed, default=0)
        return self.node(i).read_index(context)

    def propose(self, i: int, data: bytes):
        r = self.node(i).propose(data)
        self.check_roles()
        return r

    # -- randomized run ---------------------------------------------------------------------

    def random_conf_change(self, pool: int) -> bool:
        """The leader of the highest term proposes one membership change drawn from the seed:
        add a server of ids 1..pool (a new one starts as a joiner) as a voter or a learner,
        promote a learner, or remove a member. True when the leader appended it."""
        lead = self.leader()
        if lead is None:
            return False
        rng = self.rng
        conf = self.node(lead).conf
        voters, learners = list(conf.voters), list(conf.learners)
        others = [i for i in range(1, pool + 1) if i not in voters and i not in learners]
        r = rng.random()
        if others and r < 0.4:
            new = rng.choice(others)
            if new not in self.ids:
                self.add_server(new)
            elif rng.random() < self.wipe_prob and self.node(lead).conf_index <= self.node(lead).log.committed:
                # An operator re-adds a server whose removal committed, with a fresh data dir, same id.
                self.wipe(new)
            (voters if rng.random() < 0.7 else learners).append(new)
        elif learners and r < 0.5:
            p = rng.choice(learners)
            learners.remove(p)
            voters.append(p)
        elif len(voters) > 2 or learners:
            # at least two voters, as ZooKeeper's reconfig requires
            p = rng.choice(voters + learners if len(voters) > 2 else learners)
            (voters if p in voters else learners).remove(p)
        else:
            return False
        r2 = self.node(lead).propose_conf_change(ConfState(tuple(sorted(voters)), tuple(sorted(learners))))
        self.check_roles()
        return isinstance(r2, int)

    def members(self) -> set[int]:
        """The members of the configuration of the leader of the highest term (all servers if none)."""
        lead = self.leader()
        return set(self.node(lead).conf.members) if lead is not None else set(self.ids)

    def random_run(
        self, steps: int, *, loss: float = 0.05, dup: float = 0.05, crashes: bool = True, reconfig_pool: int = 0
    ) -> int:
        """Faults and traffic chosen by the seed; invariants checked at every step.
        With `reconfig_pool`, the leader also changes the membership (servers 1..pool).
        Returns the number of proposals accepted by a leader."""
        rng = self.rng
        proposals = 0
        actions = (
            ["deliver"] * 40
            + ["tick"] * 20
            + ["ready"] * 25
            + ["propose"] * 6
            + ["read"] * 2
            + ["compact"] * 2
            + ["net"] * 2
            + (["crash"] * 1 + ["restart"] * 3 if crashes else [])
            + (["conf"] * 2 if reconfig_pool else [])
        )
        for step in range(steps):
            act = rng.choice(actions)
            if act == "deliver" and self.inflight:
                m = self.inflight.pop(rng.randrange(len(self.inflight)))  # reorder
                r = rng.random()
                if r < loss:
                    continue
                if r < loss + dup:
                    self.inflight.append(m)
                self.deliver(m)
            elif act == "tick":
                i = rng.choice(self.ids)
                if self.nodes[i] is not None:
                    self.tick(i)
            elif act == "ready":
                self.process_ready(rng.choice(self.ids))
            elif act == "propose":
                i = rng.choice(self.ids)
                if self.nodes[i] is not None:
                    if self.propose(i, b"s%d-%d" % (self.seed, step)):
                        proposals += 1
            elif act == "read":
                i = rng.choice(self.ids)
                if self.nodes[i] is not None:
                    self.read_index(i, b"r%d" % step)
            elif act == "compact":
                i = rng.choice(self.ids)
                if self.nodes[i] is not None and not self.node(i).has_ready():
                    self.compact(i)
            elif act == "net":
                if rng.random() < 0.4:
                    self.heal()
                else:
                    shuffled = self.ids[:]
                    rng.shuffle(shuffled)
                    k = rng.randrange(1, len(shuffled))
                    self.partition(shuffled[:k], shuffled[k:])
            elif act == "crash":
                live = self.live()
                if len(live) > 1:
                    self.crash(rng.choice(live))
            elif act == "restart":
                dead = [i for i in self.ids if self.nodes[i] is None]
                if dead:
                    self.start(rng.choice(dead))
            elif act == "conf":
                self.random_conf_change(reconfig_pool)
        return proposals

    def converge(self, max_ticks: int = 400) -> None:
        """Liveness: heal everything, restart everyone; a new write must reach
        every node's state machine within `max_ticks` ticks."""
        self.heal()
        for i in self.ids:
            if self.nodes[i] is None:
                self.start(i)
        marker = b"final-%d" % self.seed
        proposed_term: int | None = None
        for _ in range(max_ticks):
            self.tick()
            self.stabilize()
            lead = self.leader()
            # (Re)propose whenever a new leader appears: an uncommitted
            # proposal of an earlier term may have been overwritten.
            if lead is not None and self.node(lead).term != proposed_term:
                if self.propose(lead, marker):
                    proposed_term = self.node(lead).term
                self.stabilize()
            # Every member of the configuration in force must apply it (a removed server need not).
            if proposed_term is not None and all(any(d == marker for _z, d in self.sm[i]) for i in self.members()):
                return
        raise LivenessFailure(f"seed {self.seed}: healed cluster did not apply a new write within {max_ticks} ticks")
