"""The replicated log as one node sees it: a snapshot, then entries.

Pure bookkeeping, no I/O. Indexes are 1-based; index 0 / term 0 is the empty
log. Entries up to `stabled` are known to be on disk; entries after it are
handed to the shell in the next `Ready`. `committed` only moves forward;
`applied` trails it and is advanced by the shell through `advance()`.

The log also knows the membership at every index it holds: the configuration
recorded in the snapshot (or, for a log that never had one, the bootstrap
configuration the node was started with), changed by each CONF entry. The
configuration in force is the latest one in the log, committed or not (Raft
thesis §4.1), so truncating an uncommitted CONF entry reverts it.
"""

from __future__ import annotations

import bisect

from .messages import (
    ConfState,
    Entry,
    EntryKind,
    MessageDecodeError,
    Snapshot,
    SnapshotMeta,
    pack_snapshot_data,
    unpack_snapshot_data,
)


class LogError(Exception):
    """A caller asked the log for something it cannot do (a programming error)."""


def decode_conf(e: Entry) -> ConfState | None:
    """The configuration a CONF entry carries; None for other entries and for a malformed one
    (every member decodes the same bytes, so every member ignores the same entry)."""
    if e.kind is not EntryKind.CONF:
        return None
    try:
        return ConfState.from_bytes(e.data)
    except (MessageDecodeError, ValueError):
        return None


class RaftLog:
    _snapshot: Snapshot
    _offset: int  # the snapshot's index, cached (see the snapshot property)

    def __init__(
        self,
        snapshot: Snapshot,
        entries: tuple[Entry, ...] | list[Entry],
        commit: int,
        applied: int,
        bootstrap: ConfState | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.entries: list[Entry] = list(entries)
        expected = snapshot.meta.index + 1
        for e in self.entries:
            if e.index != expected:
                raise LogError(
                    f"persisted entries must follow the snapshot (index {snapshot.meta.index}) "
                    f"without gaps: expected index {expected}, found {e.index}"
                )
            expected += 1
        self.stabled = self.last_index()
        # A persisted commit index can never exceed what is on disk, but clamp
        # defensively so a damaged hard state cannot make us apply nothing-at-all.
        self.committed = max(snapshot.meta.index, min(commit, self.last_index()))
        self.applied = max(snapshot.meta.index, min(applied, self.committed))
        self.pending_snapshot: Snapshot | None = None  # received, not yet persisted
        self.bootstrap = bootstrap if bootstrap is not None else ConfState(())
        recorded, _ = unpack_snapshot_data(snapshot.data)
        self.conf_base: ConfState = recorded if recorded is not None else self.bootstrap
        # indexes of the (well-formed) CONF entries held, ascending; bumped `conf_epoch` on any change
        self.conf_indexes: list[int] = [e.index for e in self.entries if decode_conf(e) is not None]
        self.conf_epoch = 0

    # -- queries ---------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @snapshot.setter
    def snapshot(self, snap: Snapshot) -> None:
        self._snapshot = snap
        self._offset = snap.meta.index  # read on every query: kept as a plain int

    @property
    def offset(self) -> int:
        return self._offset

    def first_index(self) -> int:
        return self._offset + 1

    def last_index(self) -> int:
        return self._offset + len(self.entries)

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`, or None if compacted away or not there yet."""
        offset = self._offset
        if index == offset:
            return self._snapshot.meta.term
        if offset < index <= offset + len(self.entries):
            return self.entries[index - offset - 1].term
        return None

    def last_term(self) -> int:
        t = self.term(self.last_index())
        assert t is not None
        return t

    def zxid(self, index: int) -> int | None:
        if index == self.offset:
            return self.snapshot.meta.zxid
        if self.offset < index <= self.last_index():
            return self.entries[index - self.offset - 1].zxid
        return None

    def last_zxid(self) -> int:
        z = self.zxid(self.last_index())
        assert z is not None
        return z

    def conf_entry_at(self, index: int) -> tuple[int, ConfState]:
        """(the index of the CONF entry in force at `index`, or the snapshot index for the
        configuration the log starts from; that configuration). `index` >= the snapshot index."""
        k = bisect.bisect_right(self.conf_indexes, index)
        if k == 0:
            return self.offset, self.conf_base
        i = self.conf_indexes[k - 1]
        e = self.entry(i)
        assert e is not None
        conf = decode_conf(e)
        assert conf is not None
        return i, conf

    def conf_at(self, index: int) -> ConfState:
        """The configuration in force at `index` (>= the snapshot index)."""
        return self.conf_entry_at(index)[1]

    def entry(self, index: int) -> Entry | None:
        if self.offset < index <= self.last_index():
            return self.entries[index - self.offset - 1]
        return None

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi; lo must not be compacted."""
        if lo <= self.offset:
            raise LogError(f"entries from {lo} are compacted (snapshot covers 1..{self.offset})")
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return []
        return self.entries[lo - self.offset - 1 : hi - self.offset - 1]

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's voting rule (§5.4.1): the candidate's log is at least as up to date."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest index <= `index` whose term is <= `term` (and that term).

        Lets a follower that rejects an append tell the leader how far back to
        jump in one round trip instead of one entry at a time.
        """
        index = min(index, self.last_index())
        while index > self.offset:
            t = self.term(index)
            assert t is not None
            if t <= term:
                return index, t
            index -= 1
        return self.offset, self.snapshot.meta.term

    # -- changes ---------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Append after the last index, truncating a conflicting suffix first."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise LogError(f"refusing to overwrite committed entry {first} (committed={self.committed})")
        offset = self._offset
        last = offset + len(self.entries)
        if first > last + 1:
            raise LogError(f"append at {first} would leave a gap after last index {last}")
        changed = False
        if first <= last:  # a conflicting suffix goes first (a leader's append is never one)
            del self.entries[first - offset - 1 :]
            self.stabled = min(self.stabled, first - 1)
            k = bisect.bisect_left(self.conf_indexes, first)
            changed = k < len(self.conf_indexes)
            del self.conf_indexes[k:]
        self.entries.extend(entries)
        for e in entries:
            if e.kind is EntryKind.CONF and decode_conf(e) is not None:
                self.conf_indexes.append(e.index)
                changed = True
        if changed:
            self.conf_epoch += 1

    def maybe_append(self, prev_index: int, prev_term: int, commit: int, entries: tuple[Entry, ...]) -> int | None:
        """Follower side of AppendEntries. Returns the new last matched index, or
        None if our log has no entry (prev_index, prev_term)."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            # Entries at or below our snapshot/commit are already ours: skip them.
            self.append([e for e in entries if e.index >= conflict])
        self.commit_to(min(commit, last_new))
        return last_new

    def _find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """First index in `entries` that we lack or hold with another term; 0 if none."""
        for e in entries:
            if e.index <= self.offset:
                continue  # compacted: committed, so it matches by log matching
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def commit_to(self, index: int) -> bool:
        last = self._offset + len(self.entries)
        if index > last:
            index = last
        if index > self.committed:
            self.committed = index
            return True
        return False

    def unstable_entries(self) -> list[Entry]:
        offset = self._offset
        return self.entries[self.stabled - offset :] if self.stabled < offset + len(self.entries) else []

    def stable_to(self, index: int, term: int) -> None:
        # Only if the entry is still the one we handed out: a truncation between
        # ready() and advance() must not mark a replaced entry as persisted.
        if self.term(index) == term and index > self.stabled:
            self.stabled = index

    def next_committed_entries(self) -> list[Entry]:
        lo = max(self.applied, self.offset) + 1
        return self.slice(lo, self.committed + 1) if self.committed >= lo else []

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise LogError(f"cannot mark {index} applied: only {self.committed} is committed")
        self.applied = max(self.applied, index)

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.snapshot = snapshot
        self.entries = []
        self.committed = snapshot.meta.index
        self.stabled = snapshot.meta.index
        self.pending_snapshot = snapshot
        recorded, _ = unpack_snapshot_data(snapshot.data)
        self.conf_base = recorded if recorded is not None else self.bootstrap
        self.conf_indexes = []
        self.conf_epoch += 1

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Drop entries up to `index` (already applied), keeping a snapshot instead.

        The snapshot's data is `data` behind the configuration in force at `index`."""
        if index <= self.offset:
            raise LogError(f"index {index} is already compacted (snapshot at {self.offset})")
        if index > self.applied:
            raise LogError(f"cannot compact to {index}: only {self.applied} is applied; compact applied state only")
        term, zxid = self.term(index), self.zxid(index)
        assert term is not None and zxid is not None
        conf = self.conf_at(index)
        snap = Snapshot(SnapshotMeta(index, term, zxid), pack_snapshot_data(conf, data))
        del self.entries[: index - self.offset]
        self.snapshot = snap
        self.conf_base = conf
        del self.conf_indexes[: bisect.bisect_right(self.conf_indexes, index)]
        self.conf_epoch += 1
        return snap
