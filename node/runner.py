"""The effect runner: carries out a deferred `Replica`'s effects, one batch at a time.

Production (``node.server``) and the simulator (``node.sim``) both drive
their replicas through this one loop; only the four things around it differ
(how to schedule a turn, the disk, the peer network, where replies go).

A replica built with ``deferred=True`` returns nothing from its inputs
(client requests, peer messages, ticks); the caller tells the runner with
:meth:`EffectRunner.input`, and the runner drains the replica once per turn,
so every input of a turn shares one batch: one fsync, one write per peer.
A turn carries the batch out in the order the replica's ``Effects`` state:

1. every ``Persist`` goes to the disk (buffered);
2. the messages the core marked as promising nothing (``Effects.early``: a
   leader's appends and heartbeats, read-index traffic, forwards, touches)
   are sent, so they travel while this member's disk syncs;
3. if the batch ``must_sync`` (the core says so: new entries, a snapshot, a
   new term or vote), the disk syncs; the runner waits for it (inline, or
   in a disk thread, or after a simulated latency) and starts no other turn
   meanwhile: inputs that arrive during the sync wait in the replica and
   share the next batch (group commit);
4. then the other messages (votes, acknowledgements, DURABLE: promises about
   this disk) are sent, watch events handed over, client replies released.

Because no turn starts while a sync is in flight, nothing a later batch
sends can depend on state that is not yet on this member's disk (see
docs/protocol.md, "Effects and durability"). A failed persist or sync stops
the runner for good: without durable state no vote, ack or reply may ever
leave again.

TEST-ONLY FAILPOINTS (``node.failpoints``; the replica's set): ``before-fsync``
and ``after-fsync`` around the sync (``error``: the sync fails with EIO and
the runner stops, as above), ``peer-send`` before each send (``error``: the
messages are dropped, as lost), and ``apply``'s ``error``, raised from the
replica's drain, which stops the runner too (the replica's state is unknown).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import Protocol

from node.failpoints import FailpointError, Failpoints
from node.replica import ClientReply, Effects, PeerMsg, Persist, Replica
from node.tree import WatchEvent


class Disk(Protocol):
    """Where a member's durable state goes (``node.storage.raftlog.RaftStore`` in production)."""

    def persist(self, p: Persist) -> None:
        """Buffer one durable change (in order)."""

    def sync(self, done: Callable[[BaseException | None], None]) -> None:
        """Make everything persisted so far durable, then call ``done`` (with the error, if any).

        ``done`` may be called before ``sync`` returns (an inline fsync) or later."""


class EffectRunner:
    """One member's effect loop (see the module docstring)."""

    def __init__(
        self,
        replica: Replica,
        disk: Disk,
        *,
        schedule: Callable[[Callable[[], None]], None],
        send: Callable[[list[PeerMsg]], None],
        events: Callable[[list[WatchEvent]], None],
        replies: Callable[[list[ClientReply]], None],
        idle: Callable[[], None] = lambda: None,
        failed: Callable[[BaseException], None] | None = None,
        synced: Callable[[float], None] = lambda seconds: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``schedule(fn)`` runs ``fn`` soon (after the current input; the event loop's
        call_soon); ``idle()`` runs after a turn that left nothing pending (the server
        computes queued reads then); ``failed(exc)`` once the disk failed; ``synced(s)``
        after every sync, with its duration (the metrics hook; called once the batch it made
        durable was released, so it is off the replies' path)."""
        self.replica = replica
        # the member's failpoints (node.failpoints), inert unless armed; a stand-in replica may have none
        fp = getattr(replica, "fp", None)
        self.fp = fp if isinstance(fp, Failpoints) else Failpoints()
        self.disk = disk
        self._schedule = schedule
        self._send = send
        self._events = events
        self._replies = replies
        self._idle = idle
        self._failed = failed
        self._synced_hook = synced
        self._clock = clock
        self._inputs = False  # the deferred replica has inputs not drained yet
        self._queue: list[Effects] = []  # effects returned by inputs directly (a non-deferred replica)
        self._scheduled = False
        self.syncing = False
        self.failure: BaseException | None = None
        self.syncs = 0

    # -- inputs

    def input(self, fx: Effects | None = None) -> None:
        """Note one input given to the replica (and queue any effects it returned at once)."""
        self._inputs = True
        if fx is not None and not fx.is_empty():
            self._queue.append(fx)
        self.kick()

    def kick(self) -> None:
        """Make sure a turn runs soon (unless a sync is in flight: its end runs one)."""
        if not self._scheduled and not self.syncing and self.failure is None:
            self._scheduled = True
            self._schedule(self.turn)

    def busy(self) -> bool:
        """Whether some input's effects are not carried out yet."""
        return self._inputs or bool(self._queue) or self.syncing

    # -- a turn

    def turn(self) -> None:
        self._scheduled = False
        if self.failure is not None or self.syncing:
            return
        if self._inputs:
            self._inputs = False
            try:
                fx = self.replica.drain()
            except FailpointError as exc:  # TEST-ONLY failpoint `apply` error: the member must stop
                self._fail(exc)
                return
            if not fx.is_empty():
                self._queue.append(fx)
        batch, self._queue = self._queue, []
        if not batch:
            self._idle()
            return
        must_sync = False
        early: list[PeerMsg] = []
        try:
            for fx in batch:
                for p in fx.persist:
                    self.disk.persist(p)
                must_sync = must_sync or fx.must_sync
                early.extend(fx.early)
        except Exception as exc:
            self._fail(exc)
            return
        fp = self.fp
        if early and not (fp.active and fp.hit("peer-send")):
            self._send(early)
        if not must_sync:
            self._release(batch)
            return
        if fp.active and fp.hit("before-fsync"):
            self._fail(OSError(errno.EIO, "failpoint before-fsync: error (test-only): fsync failed"))
            return
        self.syncing = True
        t0 = self._clock()
        self.disk.sync(lambda exc: self._sync_done(batch, t0, exc))

    def _sync_done(self, batch: list[Effects], t0: float, exc: BaseException | None) -> None:
        self.syncing = False
        if exc is None and self.fp.active and self.fp.hit("after-fsync"):
            exc = OSError(errno.EIO, "failpoint after-fsync: error (test-only): fsync reported failure")
        if exc is not None:
            self._fail(exc)
            return
        self.syncs += 1
        elapsed = self._clock() - t0
        self._release(batch)
        self._synced_hook(elapsed)  # (metrics: after the replies left, off their path)

    def _release(self, batch: list[Effects]) -> None:
        later = [m for fx in batch for m in fx.messages]
        if later and not (self.fp.active and self.fp.hit("peer-send")):
            self._send(later)
        for fx in batch:
            if fx.events:
                self._events(fx.events)
        for fx in batch:
            if fx.replies:
                self._replies(fx.replies)
        if self.busy():
            # Replies released requests (or inputs arrived during the sync) whose effects are
            # not carried out yet: run them first, and compute queued reads only after them.
            self.kick()
        else:
            self._idle()

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        if self._failed is not None:
            self._failed(exc)


__all__ = ["Disk", "EffectRunner"]
