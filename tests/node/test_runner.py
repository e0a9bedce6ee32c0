"""The effect runner (node/runner.py): the one effect loop production and the simulator share."""

from __future__ import annotations

import random
from collections.abc import Callable

from node.replica import ClientReply, CreateSession, Effects, Forward, Persist, Replica, Write
from node.runner import EffectRunner
from node.tree import OPEN_ACL_UNSAFE, CreateOp


class FakeReplica:
    """Hands out queued Effects on drain (the deferred replica's contract)."""

    def __init__(self) -> None:
        self.next: list[Effects] = []
        self.drains = 0

    def drain(self) -> Effects:
        self.drains += 1
        return self.next.pop(0) if self.next else Effects()


class Disk:
    """Records persists and syncs; a sync completes when the test says so (a slow disk)."""

    def __init__(self, log: list, inline: bool = False, error: BaseException | None = None) -> None:
        self.log = log
        self.inline = inline
        self.error = error
        self.waiting: list[Callable[[BaseException | None], None]] = []

    def persist(self, p: Persist) -> None:
        self.log.append(("persist", p))

    def sync(self, done: Callable[[BaseException | None], None]) -> None:
        self.log.append(("sync",))
        if self.inline:
            done(self.error)
        else:
            self.waiting.append(done)

    def finish(self) -> None:
        self.waiting.pop(0)(None)


def make(disk_inline: bool = False, error: BaseException | None = None):
    log: list = []
    replica = FakeReplica()
    disk = Disk(log, disk_inline, error)
    soon: list[Callable[[], None]] = []
    failures: list[BaseException] = []
    runner = EffectRunner(
        replica,
        disk,
        schedule=soon.append,  # type: ignore[arg-type]
        send=lambda msgs: log.append(("send", [getattr(m, "seq", None) for m in msgs])),
        events=lambda evs: log.append(("events", len(evs))),
        replies=lambda reps: log.append(("replies", [r.seq for r in reps])),
        idle=lambda: log.append(("idle",)),
        failed=failures.append,
        synced=lambda s: log.append(("synced",)),
    )

    def loop() -> None:
        while soon:
            soon.pop(0)()

    return runner, replica, disk, log, loop, failures


def fwd(seq: int) -> Forward:
    return Forward(1, 2, 0x77, seq, b"")


def fx(seq: int, sync: bool = True) -> Effects:
    return Effects(
        persist=[Persist()],
        must_sync=sync,
        early=[fwd(seq)],
        messages=[fwd(100 + seq)],
        replies=[ClientReply(1, seq, 0, None, seq)],
    )


def test_early_messages_leave_before_the_sync_promises_and_replies_after_it() -> None:
    runner, replica, disk, log, loop, _ = make(disk_inline=True)
    replica.next = [fx(1)]
    runner.input()
    loop()
    # the fsync metrics hook runs last, once the batch's messages and replies have left
    assert [e[0] for e in log] == ["persist", "send", "sync", "send", "replies", "idle", "synced"]
    assert log[1] == ("send", [1]) and log[3] == ("send", [101])


def test_no_turn_starts_while_a_sync_is_in_flight_and_inputs_meanwhile_share_the_next_batch() -> None:
    runner, replica, disk, log, loop, _ = make()
    replica.next = [fx(1)]
    runner.input()
    loop()
    assert runner.syncing and log[-1] == ("sync",) and runner.busy()
    runner.input()
    runner.input()
    loop()
    assert replica.drains == 1  # nothing drained while the disk syncs
    replica.next = [fx(2)]
    disk.finish()  # the first batch's promises and replies leave, then the next batch starts
    loop()
    kinds = [e for e in log if e[0] in ("send", "replies", "sync")]
    assert kinds == [("send", [1]), ("sync",), ("send", [101]), ("replies", [1]), ("send", [2]), ("sync",)]
    assert replica.drains == 2
    disk.finish()
    loop()
    assert log[-2:] == [("idle",), ("synced",)] and not runner.busy()


def test_a_batch_without_durable_changes_needs_no_sync() -> None:
    runner, replica, disk, log, loop, _ = make()
    replica.next = [fx(1, sync=False)]
    runner.input()
    loop()
    assert ("sync",) not in log and ("replies", [1]) in log


def test_a_failed_sync_stops_the_runner_for_good() -> None:
    boom = OSError("disk gone")
    runner, replica, disk, log, loop, failures = make(disk_inline=True, error=boom)
    replica.next = [fx(1), fx(2)]
    runner.input()
    loop()
    assert failures == [boom] and ("replies", [1]) not in log and ("send", [101]) not in log
    runner.input()
    loop()
    assert replica.drains == 1  # never again


def test_a_real_single_voter_replies_only_after_its_sync() -> None:
    """A one-member replica through the runner: leader on its first tick, a write answered after the fsync."""
    log: list = []
    disk = Disk(log)
    r = Replica(1, [1], None, random.Random(1), deferred=True)
    soon: list[Callable[[], None]] = []
    replies: list[ClientReply] = []
    runner = EffectRunner(
        r, disk, schedule=soon.append, send=lambda m: None, events=lambda e: None, replies=replies.extend
    )

    def loop() -> None:
        while soon:
            soon.pop(0)()
        while disk.waiting:
            disk.finish()
            while soon:
                soon.pop(0)()

    runner.input(r.tick(0))
    loop()
    assert r.is_leader
    runner.input(r.client_request(7, 0, 1, CreateSession(4000), 1))
    while soon:
        soon.pop(0)()
    assert disk.waiting and not replies  # the session's entry is being synced: no answer yet
    loop()
    sid = replies[-1].value[0]
    runner.input(r.client_request(7, sid, 2, Write(CreateOp("/a", b"x", OPEN_ACL_UNSAFE)), 2))
    loop()
    assert replies[-1].seq == 2 and replies[-1].err == 0 and r.tree.exists("/a") is not None
