"""Crash durability of the squall node: SIGKILL, restart on the same data dir.

- Mid-stream kill: one kazoo session keeps a window of pipelined creates (and
  two-node multis) in flight; the node is SIGKILLed right after a fixed
  number of acknowledgements, with the window still outstanding. After a
  restart every acknowledged write is present with its exact data; every
  unacknowledged one is wholly present or wholly absent (a multi never half
  applied); and, because one session's writes are applied in order from a
  sequential log, the surviving writes are a prefix of the issue order.
- Snapshot + log tail: with a small ``snapCount`` the node snapshots several
  times; after a SIGKILL the restarted node has every znode with the very
  same Stat, and sequential names continue where they left off.
- Torn tail: the newest log file loses its last bytes while the node is
  down; the node still starts, says it cut the tail, keeps every earlier
  write, and appends cleanly after the cut (a second crash recovers too).
- Corrupt middle: one byte flipped inside an earlier record's data; the node
  refuses to start and says why, rather than drop acknowledged writes.
- Sessions: a client resumes its session after the crash with its ephemeral
  intact; an orphaned session expires on the restarted node.

The crash, snapshot and session tests also run against Apache ZooKeeper, to
show that they check ZooKeeper's guarantees and not a quirk of our node.

The kill point is a count of acknowledgements, not a time, so the tests do
not depend on machine speed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.states import ZnodeStat
from kazoo.security import make_acl

from tests.node.servers import ServerProcess, ServerStartError

ROOT = "/d"
WINDOW = 64  # outstanding requests when the kill lands
REPLY_TIMEOUT_S = 15.0


@dataclass
class Attempt:
    """One write the client issued: a create, or a multi of two creates."""

    index: int
    paths: tuple[str, ...]
    payload: bytes
    acked: bool = False  # True only when the reply said OK
    error: str = ""  # why it is not acknowledged (connection loss, ...)


def payload_for(index: int, size: int = 300) -> bytes:
    """Distinct, self-checking data: a torn or swapped value cannot match."""
    seed = hashlib.sha256(str(index).encode()).hexdigest().encode()
    return (seed * (size // len(seed) + 1))[:size]


def connect(address: str) -> KazooClient:
    client = KazooClient(hosts=address, timeout=10)
    client.start(timeout=15)
    return client


def close(client: KazooClient) -> None:
    try:
        client.stop()
    finally:
        client.close()


def _issue(client: KazooClient, attempt: Attempt):
    if len(attempt.paths) == 1:
        return client.create_async(attempt.paths[0], attempt.payload)
    txn = client.transaction()
    for path in attempt.paths:
        txn.create(path, attempt.payload)
    return txn.commit_async()


def _settle(attempt: Attempt, result) -> None:
    try:
        value = result.get(timeout=REPLY_TIMEOUT_S)
    except KazooException as exc:
        attempt.error = type(exc).__name__
        return
    except Exception as exc:  # timeouts from the handler
        attempt.error = f"{type(exc).__name__}: {exc}"
        return
    if isinstance(value, list):  # a multi: a list of per-op results
        failed = [r for r in value if isinstance(r, Exception)]
        if failed:
            attempt.error = f"multi failed: {failed!r}"
            return
    attempt.acked = True


def write_then_kill(
    client: KazooClient, server: ServerProcess, first_index: int, kill_after_acks: int
) -> list[Attempt]:
    """Pipeline creates until ``kill_after_acks`` are acknowledged, SIGKILL the node, drain the rest."""
    attempts: list[Attempt] = []
    outstanding: deque = deque()
    acked = 0
    index = first_index
    while acked < kill_after_acks:
        while len(outstanding) < WINDOW:
            if index % 10 == 9:
                paths = (f"{ROOT}/m{index:06d}a", f"{ROOT}/m{index:06d}b")
            else:
                paths = (f"{ROOT}/n{index:06d}",)
            attempt = Attempt(index, paths, payload_for(index))
            attempts.append(attempt)
            outstanding.append((attempt, _issue(client, attempt)))
            index += 1
        attempt, result = outstanding.popleft()
        _settle(attempt, result)
        assert attempt.acked, f"write {attempt.index} failed before the kill: {attempt.error}"
        acked += 1
    server.kill()  # the window is still in flight
    for attempt, result in outstanding:
        _settle(attempt, result)
    return attempts


def read_tree(client: KazooClient, root: str) -> dict[str, tuple[bytes, ZnodeStat]]:
    return {f"{root}/{name}": client.get(f"{root}/{name}") for name in client.get_children(root)}


def verify_attempts(attempts: list[Attempt], tree: dict[str, tuple[bytes, ZnodeStat]]) -> list[str]:
    """Problems: lost acknowledged writes, torn writes, wrong data, gaps in the order."""
    problems = []
    present_flags = []
    for a in attempts:
        found = [p for p in a.paths if p in tree]
        if found and len(found) != len(a.paths):
            problems.append(f"write {a.index} is half applied: {found} of {list(a.paths)}")
        for p in found:
            if tree[p][0] != a.payload:
                problems.append(f"{p} has {len(tree[p][0])} bytes of wrong data")
        present = len(found) == len(a.paths)
        if a.acked and not present:
            problems.append(f"acknowledged write {a.index} {list(a.paths)} was lost")
        present_flags.append(present)
    if True in present_flags:
        last = len(present_flags) - 1 - present_flags[::-1].index(True)
        gaps = [attempts[i].index for i in range(last) if not present_flags[i]]
        if gaps:
            problems.append(
                f"writes {gaps[:10]} are missing although the later write {attempts[last].index}"
                " from the same session survived (FIFO order broken)"
            )
    return problems


def unexpected_paths(attempts: list[Attempt], tree: dict, allowed: set[str] = frozenset()) -> set[str]:
    known = {p for a in attempts for p in a.paths} | set(allowed)
    return set(tree) - known


@pytest.fixture(params=["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def make_server(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., ServerProcess]:
    """``make(config=None)``: a started server of the parametrized kind.

    ``config`` holds zoo.cfg keys; squall reads them from ``--config FILE``.
    Apache ZooKeeper runs the same crash tests to prove they test what the
    guarantees say and not a quirk of our node.
    """
    kind = request.param
    factory = request.getfixturevalue(f"{kind}_factory")
    counter = iter(range(1000))

    def make(config: dict[str, str] | None = None) -> ServerProcess:
        if kind == "zookeeper":
            return factory(extra_config=config)
        args = []
        if config:
            path = tmp_path / f"squall-{next(counter)}.cfg"
            path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
            args = ["--config", str(path)]
        return factory(extra_args=args)

    return make


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_mid_stream_keeps_every_acknowledged_write(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    all_attempts: list[Attempt] = []
    seen: dict[str, bytes] = {}
    for round_no, kill_after in enumerate((300, 250)):
        client = connect(server.address)
        try:
            client.ensure_path(ROOT)
            attempts = write_then_kill(client, server, first_index=round_no * 100_000, kill_after_acks=kill_after)
        finally:
            close(client)
        all_attempts += attempts
        server.restart()
        client = connect(server.address)
        try:
            tree = read_tree(client, ROOT)
            # a fresh write after recovery gets a zxid above everything recovered
            stat = client.create(f"{ROOT}/after{round_no}", b"x", include_data=True)[1]
        finally:
            close(client)
        acked = sum(a.acked for a in attempts)
        unacked = len(attempts) - acked
        survived = sum(all(p in tree for p in a.paths) for a in attempts if not a.acked)
        print(f"round {round_no}: {acked} acknowledged, {unacked} in flight at the kill, {survived} of those survived")
        problems = verify_attempts(attempts, tree)  # the prefix rule holds per session
        # whatever a client saw after an earlier restart (acknowledged or not) stays: no rollback
        problems += [
            f"{p} was seen after an earlier restart and is now gone or changed"
            for p, data in seen.items()
            if tree.get(p, (None,))[0] != data
        ]
        seen.update({p: tree[p][0] for p in tree})
        extra = unexpected_paths(all_attempts, tree, {f"{ROOT}/after{i}" for i in range(round_no)})
        assert not extra, f"znodes nobody wrote appeared: {sorted(extra)[:10]}"
        assert not problems, "\n".join(problems[:30]) + f"\nnode log:\n{server.log_tail()}"
        assert unacked > 0, "the kill landed with nothing in flight; the test did not test a crash mid-stream"
        top = max(s.czxid for _, s in tree.values())
        assert stat.czxid > top, f"new write got zxid {stat.czxid:#x}, not above the recovered {top:#x}"


def _snapshot_like_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and "snap" in p.name.lower())


@pytest.mark.integration
@pytest.mark.slow
def test_recovery_from_snapshot_and_log_tail(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server({"snapCount": "25"})  # ZooKeeper's key: txns between snapshots
    root = "/s"
    client = connect(server.address)
    try:
        client.create(root)
        pending = [client.create_async(f"{root}/n{i:04d}", payload_for(i, 100)) for i in range(200)]
        for r in pending:
            r.get(timeout=REPLY_TIMEOUT_S)
        for i in range(0, 200, 3):
            client.set(f"{root}/n{i:04d}", payload_for(10_000 + i, 120))
        for i in range(0, 200, 5):
            client.delete(f"{root}/n{i:04d}")
        seq = [client.create(f"{root}/seq-", b"", sequence=True) for _ in range(7)]
        client.set_acls(f"{root}/n0001", [make_acl("world", "anyone", read=True, write=True)])  # aversion 1
        before = read_tree(client, root)
        before_root = client.get(root)
    finally:
        close(client)
    server.kill()
    snapshots = _snapshot_like_files(server.data_dir)
    assert snapshots, (
        f"no snapshot file in {server.data_dir} after {len(before) + 250} txns with snapCount=25;"
        f" files: {sorted(p.name for p in server.data_dir.rglob('*'))}"
    )
    server.restart()
    client = connect(server.address)
    try:
        after = read_tree(client, root)
        after_root = client.get(root)
        next_seq = client.create(f"{root}/seq-", b"", sequence=True)
    finally:
        close(client)
    assert sorted(after) == sorted(before), (
        f"children differ: lost {sorted(set(before) - set(after))[:10]}, extra {sorted(set(after) - set(before))[:10]}"
    )
    diffs = [f"{p}: {before[p]} != {after[p]}" for p in before if before[p] != after[p]]
    assert not diffs, "znodes changed across the restart:\n" + "\n".join(diffs[:10])
    assert after_root == before_root, f"{root} changed: {before_root} != {after_root}"
    last = int(seq[-1].rsplit("-", 1)[1])
    assert next_seq == f"{root}/seq-{last + 1:010d}", f"sequence restarted wrongly: {next_seq} after {seq[-1]}"


def newest_log_file(data_dir: Path) -> Path:
    """The write-ahead log segment written last (not the text log, not a snapshot)."""
    candidates = [
        p
        for p in data_dir.rglob("*")
        if p.is_file()
        and p.name != "squall-node.log"
        and "snap" not in p.name.lower()
        and re.search(r"(^|[._-])(log|wal)([._-]|$)", p.name.lower())
    ]
    assert candidates, f"no write-ahead log file in {data_dir}: {sorted(p.name for p in data_dir.rglob('*'))}"
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name))


def write_acked(client: KazooClient, first: int, count: int) -> list[Attempt]:
    """Sequential creates, each acknowledged before the next is sent."""
    attempts = []
    for i in range(first, first + count):
        attempt = Attempt(i, (f"{ROOT}/n{i:06d}",), payload_for(i))
        client.create(attempt.paths[0], attempt.payload)
        attempt.acked = True
        attempts.append(attempt)
    return attempts


@pytest.mark.integration
@pytest.mark.slow
def test_torn_last_record_is_cut_and_appends_continue(squall_factory: Callable[..., ServerProcess]) -> None:
    server = squall_factory()
    client = connect(server.address)
    try:
        client.create(ROOT)
        attempts = write_acked(client, 0, 100)
    finally:
        close(client)
    server.kill()
    wal = newest_log_file(server.data_dir)
    size = wal.stat().st_size
    assert size > 64, f"{wal.name} holds only {size} bytes; expected the 100 creates in it"
    os.truncate(wal, size - 3)  # the last record loses its last bytes: a torn write
    log_mark = len(server.log_text())
    server.restart()  # must start, not refuse
    restart_log = server.log_text()[log_mark:]
    assert re.search(r"torn|truncat|\bcut", restart_log, re.IGNORECASE), (
        f"the node did not log that it cut the torn tail of {wal.name} ({size} -> {size - 3} bytes):\n"
        f"{restart_log[-3000:]}"
    )
    # the torn record held the last create: it may be gone, nothing before it may be
    attempts[-1].acked = False
    client = connect(server.address)
    try:
        tree = read_tree(client, ROOT)
        problems = verify_attempts(attempts, tree)
        assert not problems, "\n".join(problems[:20])
        assert all(a.paths[0] in tree for a in attempts[:-1])
        more = write_acked(client, 1000, 50)  # appended after the cut
    finally:
        close(client)
    server.kill()
    server.restart()  # a second recovery must read cleanly past the cut
    client = connect(server.address)
    try:
        tree = read_tree(client, ROOT)
    finally:
        close(client)
    problems = verify_attempts(attempts, tree) + verify_attempts(more, tree)
    assert not problems, "after a second crash:\n" + "\n".join(problems[:20]) + f"\n{server.log_tail()}"


@pytest.mark.integration
@pytest.mark.slow
def test_corrupt_record_in_the_middle_is_refused(squall_factory: Callable[..., ServerProcess]) -> None:
    server = squall_factory()
    client = connect(server.address)
    try:
        client.create(ROOT)
        attempts = write_acked(client, 0, 100)
    finally:
        close(client)
    server.kill()
    wal = newest_log_file(server.data_dir)
    raw = bytearray(wal.read_bytes())
    # flip a byte inside the data of write 50, so lengths stay intact: only a checksum can tell
    at = raw.find(attempts[50].payload)
    at = at + 10 if at >= 0 else len(raw) // 2
    raw[at] ^= 0x01
    wal.write_bytes(bytes(raw))
    log_mark = len(server.log_text())
    refused = False
    try:
        server.restart(timeout=20)
    except ServerStartError:
        refused = True
    restart_log = server.log_text()[log_mark:]
    assert refused, (
        f"the node started on a log whose record in the middle is corrupt (byte {at} of {wal.name} flipped);"
        f" silently dropping acknowledged writes is not allowed:\n{restart_log[-3000:]}"
    )
    assert re.search(r"corrupt|checksum|crc", restart_log, re.IGNORECASE), (
        f"the node did not say why it refused {wal.name} (byte {at} flipped):\n{restart_log[-3000:]}"
    )


@pytest.mark.integration
@pytest.mark.slow
def test_sessions_and_ephemerals_survive_a_crash(make_server: Callable[..., ServerProcess]) -> None:
    """Sessions are durable state too: after SIGKILL + restart a client resumes its
    session (same id, ephemeral kept), and a session whose client never came back
    expires on the restarted node, taking its ephemeral with it."""
    server = make_server({"tickTime": "500"})  # session timeouts 1..10 s
    keeper = KazooClient(hosts=server.address, timeout=8)
    leaver = KazooClient(hosts=server.address, timeout=2)
    observer = None
    try:
        keeper.start(timeout=15)
        leaver.start(timeout=15)
        keeper.create("/eph-keeper", b"k", ephemeral=True)
        leaver.create("/eph-leaver", b"l", ephemeral=True)
        session_id = keeper.client_id[0]
        server.kill()
        leaver.stop()  # the server is down: no closeSession reaches it, the session is orphaned
        server.restart()
        reconnected = keeper.handler.event_object()
        keeper.add_listener(lambda state: reconnected.set() if state == "CONNECTED" else None)
        if not keeper.connected:
            assert reconnected.wait(30), "the client did not reconnect to the restarted node"
        stat = keeper.exists("/eph-keeper")
        assert keeper.client_id[0] == session_id, "the client got a new session: its old one was not recovered"
        assert stat is not None and stat.ephemeralOwner == session_id, f"the ephemeral was lost: {stat}"

        observer = connect(server.address)
        gone = observer.handler.event_object()
        if observer.exists("/eph-leaver", watch=lambda event: gone.set()) is not None:
            # generous bound: the orphaned session's timeout is 2 s
            assert gone.wait(30), "the orphaned session never expired after the restart"
        assert observer.exists("/eph-leaver") is None

        keeper.stop()  # closeSession removes its ephemeral at once
        assert observer.exists("/eph-keeper") is None, "closing the session left its ephemeral behind"
    finally:
        for c in (keeper, leaver, observer):
            if c is not None:
                try:
                    c.stop()
                finally:
                    c.close()


# --- the verdict logic on made-up outcomes (fast, no servers) ---


def _attempts(n: int) -> list[Attempt]:
    out = []
    for i in range(n):
        paths = (f"{ROOT}/m{i}a", f"{ROOT}/m{i}b") if i % 2 else (f"{ROOT}/n{i}",)
        out.append(Attempt(i, paths, payload_for(i), acked=i < 2))
    return out


def _tree_of(attempts: list[Attempt]) -> dict:
    return {p: (a.payload, None) for a in attempts for p in a.paths}


def test_verify_accepts_a_prefix_with_unacknowledged_tail() -> None:
    attempts = _attempts(5)
    assert verify_attempts(attempts, _tree_of(attempts[:3])) == []
    assert verify_attempts(attempts, _tree_of(attempts[:2])) == []


def test_verify_reports_loss_tear_corruption_and_gaps() -> None:
    attempts = _attempts(5)
    assert any("acknowledged write 1" in p for p in verify_attempts(attempts, _tree_of(attempts[:1])))
    torn = _tree_of(attempts[:3])
    del torn[f"{ROOT}/m1b"]
    assert any("half applied" in p for p in verify_attempts(attempts, torn))
    corrupt = _tree_of(attempts[:2])
    corrupt[f"{ROOT}/n0"] = (b"other", None)
    assert any("wrong data" in p for p in verify_attempts(attempts, corrupt))
    gap = _tree_of(attempts[:2] + attempts[3:4])
    assert any("FIFO" in p for p in verify_attempts(attempts, gap))
