"""Workload checkers on hand-made histories, op sources, and (integration)
every workload against a real Apache ZooKeeper ensemble."""

from __future__ import annotations

import itertools
import os
import random
import time
from pathlib import Path

import pytest

from checkers.history import Op
from workloads import lock, register, session
from workloads import set as set_workload
from workloads.checks import check_lock, check_sessions, check_set, linearizable_per_key, sequential_registers


class H:
    """A tiny history builder: ``h.op(p, f, value, result, ...)`` appends an
    invoke and its completion; ``h.invoke``/``h.complete`` interleave."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def invoke(self, p, f, value=None):
        self.ops.append(Op(len(self.ops), len(self.ops) * 1000, "invoke", p, f, value))

    def complete(self, p, f, typ, value=None, zxid=None, error=None):
        self.ops.append(Op(len(self.ops), len(self.ops) * 1000, typ, p, f, value, error=error, zxid=zxid))

    def op(self, p, f, value, typ="ok", out=None, zxid=None, error=None):
        self.invoke(p, f, value)
        self.complete(p, f, typ, value if out is None else out, zxid, error)
        return self


# --------------------------------------------------------------------- set
def _set_history(final, extra=()):
    h = H()
    h.op(0, "add", 0).op(1, "add", 1).op(0, "add", 2, "info").op(1, "add", 3, "fail")
    for e in extra:
        h.op(*e)
    h.op(0, "final-read", None, out=final)
    return h.ops


def test_set_valid_with_recovered_indeterminate_add():
    r = check_set(_set_history([0, 1, 2]))
    assert r.valid is True and r.details["recovered"] == 1 and r.details["lost"] == 0


def test_set_lost_acknowledged_add_is_invalid():
    r = check_set(_set_history([1]))
    assert r.valid is False and r.counterexample["lost"] == [0]
    assert "missing from the final read" in r.explanation


def test_set_unexpected_and_failed_elements_are_invalid():
    r = check_set(_set_history([0, 1, 3, 99]))
    assert r.valid is False and r.counterexample["unexpected"] == [3, 99]


def test_set_stale_reads_counted_but_own_stale_read_invalid():
    r = check_set(_set_history([0, 1], extra=[(1, "read", None, "ok", [1])]))
    assert r.valid is True and r.details["stale_reads"] == 1
    r = check_set(_set_history([0, 1], extra=[(0, "read", None, "ok", [1])]))
    assert r.valid is False and r.counterexample["own_stale"]


def test_set_without_final_read_is_unknown():
    h = H().op(0, "add", 0).op(0, "final-read", None, "info")
    assert check_set(h.ops).valid == "unknown"


# -------------------------------------------------------------------- lock
def _w(read, zxid, lock_node="lock-1"):
    return {"read": read, "wrote": read + 1, "lock": lock_node, "write_zxid": zxid}


def test_lock_fenced_chain_valid():
    h = H()
    for i in range(4):
        h.op(i % 2, "fenced-write", None, out=_w(i, 10 + i))
    h.op(0, "fenced-write", None, "fail", out=None, error="fence-rejected: ['NoNode']")
    r = check_lock(h.ops)
    assert r.valid is True and r.details["counts"]["fenced-write"]["fence_rejected"] == 1


def test_lock_overlapping_fenced_writes_are_invalid():
    h = H().op(0, "fenced-write", None, out=_w(0, 10)).op(1, "fenced-write", None, out=_w(0, 11))
    r = check_lock(h.ops)
    assert r.valid is False and r.counterexample["fenced"][0]["kind"] == "overlap"


def test_lock_fenced_writes_going_backwards_are_invalid():
    h = H().op(0, "fenced-write", None, out=_w(0, 10)).op(1, "fenced-write", None, out=_w(1, 11))
    h.op(0, "fenced-write", None, out=_w(2, 12)).op(1, "fenced-write", None, out=_w(1, 13))
    r = check_lock(h.ops)
    assert r.valid is False
    kinds = {p["kind"] for p in r.counterexample["fenced"]}
    assert "overlap" in kinds or "backwards" in kinds


def test_lock_gap_needs_an_indeterminate_write():
    h = H().op(0, "fenced-write", None, out=_w(0, 10)).op(1, "fenced-write", None, out=_w(2, 12))
    assert check_lock(h.ops).valid is False
    h.op(0, "fenced-write", None, "info")
    assert check_lock(h.ops).valid is True


def test_lock_unfenced_overlap_is_a_finding_not_a_failure():
    h = H().op(0, "unfenced-write", None, out=_w(0, 10)).op(1, "unfenced-write", None, out=_w(0, 11))
    r = check_lock(h.ops)
    assert r.valid is True and r.details["unfenced_findings"][0]["kind"] == "overlap"
    assert "unfenced finding" in r.summary


# ----------------------------------------------------------------- session
def _sessions(final_nodes, close_type="ok"):
    h = H()
    h.op(0, "create", None, out={"node": "e-a-1", "session": "0x1"})
    h.op(0, "close", None, close_type, out={"closed": "0x1", "session": "0x2"})
    h.op(0, "create", None, out={"node": "e-a-2", "session": "0x2"})
    h.op(1, "create", None, out={"node": "e-b-1", "session": "0x3"})
    h.op(0, "final-read", None, out={"session": "0x2", "nodes": final_nodes})
    return h.ops


def test_session_valid():
    r = check_sessions(_sessions({"e-a-2": "0x2", "e-b-1": "0x3"}))
    assert r.valid is True and r.details["dead_sessions"] == 1


def test_session_ephemeral_of_closed_session_surviving_is_invalid():
    r = check_sessions(_sessions({"e-a-1": "0x1", "e-a-2": "0x2"}))
    assert r.valid is False and r.counterexample["problems"][0]["kind"] == "survived"


def test_session_ephemeral_of_live_session_vanishing_is_invalid():
    r = check_sessions(_sessions({}))
    assert r.valid is False and r.counterexample["problems"][0]["kind"] == "vanished"


def test_session_unconfirmed_close_is_not_judged():
    ops = _sessions({"e-a-1": "0x1", "e-a-2": "0x2"}, close_type="info")
    # the info close's completion carries no new session: the next create
    # shows 0x2, but the close was not confirmed, so 0x1 is not known dead
    assert check_sessions(ops).valid is True


def test_session_expired_session_replaced_is_dead():
    h = H()
    h.op(0, "create", None, out={"node": "e-a-1", "session": "0x1"})
    h.op(0, "create", None, out={"node": "e-a-2", "session": "0x5"})  # kazoo re-created it
    h.op(0, "final-read", None, out={"session": "0x5", "nodes": {"e-a-1": "0x1", "e-a-2": "0x5"}})
    r = check_sessions(h.ops)
    assert r.valid is False and "expired" in r.explanation


def test_session_reported_expiry_makes_a_session_dead():
    h = H()
    h.op(0, "create", None, out={"node": "e-a-1", "session": "0x1", "expired": []})
    h.op(0, "create", None, out={"node": "e-a-2", "session": "0x5", "expired": ["0x1"]})
    h.op(0, "final-read", None, out={"session": "0x5", "nodes": {"e-a-1": "0x1", "e-a-2": "0x5"}, "expired": []})
    r = check_sessions(h.ops)
    assert r.valid is False and "reported expired" in r.explanation


def test_session_a_final_read_before_the_expiry_was_known_is_not_judged():
    # Process 1 reads first; only later does process 0 learn (and report) that its
    # session 0x1 expired: the read may have run while 0x1 was alive.
    h = H()
    h.op(0, "create", None, out={"node": "e-a-1", "session": "0x1", "expired": []})
    h.op(1, "create", None, out={"node": "e-b-1", "session": "0x3", "expired": []})
    h.op(1, "final-read", None, out={"session": "0x3", "nodes": {"e-a-1": "0x1", "e-b-1": "0x3"}, "expired": []})
    h.op(0, "final-read", None, out={"session": "0x5", "nodes": {"e-b-1": "0x3"}, "expired": ["0x1"]})
    r = check_sessions(h.ops)
    assert r.valid is True, r.explanation
    # the same read called after the report is judged
    h.op(1, "final-read", None, out={"session": "0x3", "nodes": {"e-a-1": "0x1", "e-b-1": "0x3"}, "expired": []})
    r = check_sessions(h.ops)
    assert r.valid is False and r.counterexample["problems"][0]["kind"] == "survived"


def test_session_changed_without_a_reported_expiry_is_not_judged():
    # The client was closed and reopened by the workload (kazoo had stopped for good):
    # the old session may still be alive, so its ephemeral proves nothing.
    h = H()
    h.op(0, "create", None, out={"node": "e-a-1", "session": "0x1", "expired": []})
    h.op(0, "create", None, out={"node": "e-a-2", "session": "0x5", "expired": []})
    h.op(0, "final-read", None, out={"session": "0x5", "nodes": {"e-a-1": "0x1", "e-a-2": "0x5"}, "expired": []})
    r = check_sessions(h.ops)
    assert r.valid is True and r.details["dead_sessions"] == 0


def test_session_an_indeterminate_sequential_create_accounts_for_its_numbered_node():
    """An ephemeral-sequential create that did not complete knows only its prefix; the node the
    server made from it (prefix + 10 digits) is accounted for, any other unknown node is not."""
    h = H()
    h.op(0, "create", None, out={"node": "e-a-1", "session": "0x1", "expired": []})
    h.op(0, "create", None, "info", out={"node": "e-a-2-s"})
    h.op(1, "final-read", None, out={"session": "0x3", "nodes": {"e-a-1": "0x1", "e-a-2-s0000000007": "0x1"}})
    assert check_sessions(h.ops).valid is True
    h.op(1, "final-read", None, out={"session": "0x3", "nodes": {"e-a-1": "0x1", "e-a-3-s0000000008": "0x1"}})
    r = check_sessions(h.ops)
    assert r.valid is False and r.counterexample["problems"][0]["kind"] == "unexpected"
    assert "e-a-3-s0000000008 was never created" in r.explanation


def test_session_ephemeral_sequential_of_a_closed_session_surviving_is_invalid():
    h = H()
    h.op(0, "create", None, out={"node": "e-a-2-s0000000001", "session": "0x1", "expired": []})
    h.op(0, "close", None, out={"closed": "0x1", "session": "0x2", "expired": []})
    h.op(0, "final-read", None, out={"session": "0x2", "nodes": {"e-a-2-s0000000001": "0x1"}, "expired": []})
    r = check_sessions(h.ops)
    assert r.valid is False and r.counterexample["problems"][0]["kind"] == "survived"


# ---------------------------------------------------------------- register
def test_register_valid_history_passes_both_checks():
    h = H()
    h.op(0, "write", [0, 1], zxid=10)
    h.op(1, "read", [0, None], out=[0, 1], zxid=10)
    h.op(1, "cas", [0, [1, 2]], zxid=11)
    h.op(0, "cas", [0, [1, 3]], "fail", zxid=12, error="BadVersion")
    h.op(0, "read", [0, None], out=[0, 2], zxid=12)
    h.op(1, "write", [1, 7], zxid=13)
    r = register.RegisterWorkload().check(h.ops)
    assert r.valid is True, r.explanation


def test_register_cas_from_a_value_never_held_is_not_linearizable():
    h = H()
    h.op(0, "write", [0, 1], zxid=10)
    h.op(1, "cas", [0, [5, 6]], zxid=11)
    r = linearizable_per_key(h.ops, budget_s=10)
    assert r.valid is False


def test_register_process_reading_back_in_time_is_not_sequential():
    h = H()
    h.op(0, "write", [0, 1], zxid=10)
    h.op(0, "write", [0, 2], zxid=11)
    h.op(1, "read", [0, None], out=[0, 2], zxid=11)
    h.op(1, "read", [0, None], out=[0, 1], zxid=11)
    r = sequential_registers(h.ops, budget_s=10)
    assert r.valid is False
    # the same reads by two different processes (one stale) are fine
    h2 = H()
    h2.op(0, "write", [0, 1], zxid=10)
    h2.op(0, "write", [0, 2], zxid=11)
    h2.op(1, "read", [0, None], out=[0, 2], zxid=11)
    h2.op(2, "read", [0, None], out=[0, 1], zxid=10)
    assert sequential_registers(h2.ops, budget_s=10).valid is True


def test_register_ops_unique_values_and_rotating_keys():
    w = register.make({"keys": 2, "ops_per_key": 10})
    ops = list(itertools.islice(w.ops(random.Random(3)), 200))
    written: dict = {}
    for op in ops:
        k, arg = op["value"]
        if op["f"] == "write":
            written.setdefault(k, []).append(arg)
        elif op["f"] == "cas":
            assert arg[0] in written.get(k, []), "cas expects a value written before"
            written.setdefault(k, []).append(arg[1])
    values = [v for vs in written.values() for v in vs]
    assert len(values) == len(set(values)), "written values must be unique (cas soundness)"
    per_key = {}
    for op in ops:
        per_key[op["value"][0]] = per_key.get(op["value"][0], 0) + 1
    assert max(per_key.values()) <= 10 and len(per_key) >= 20
    with pytest.raises(ValueError, match="'local', 'sync' or 'linearizable"):
        register.make({"reads": "quorum"})


def test_clients_refuse_malformed_ops_without_connecting():
    from harness.dbs.zk import lock as zk_lock
    from harness.dbs.zk import register as zk_register
    from harness.dbs.zk import session as zk_session
    from harness.dbs.zk import set as zk_set

    assert zk_register.RegisterClient().invoke({"f": "incr", "value": 1})["type"] == "fail"
    assert zk_set.SetClient().invoke({"f": "add", "value": "x"})["type"] == "fail"
    assert zk_lock.LockClient().invoke({"f": "write"})["type"] == "fail"
    assert zk_session.SessionClient().invoke({"f": "nap"})["type"] == "fail"


def test_unopened_client_fails_definitely():
    from harness.dbs.zk.register import RegisterClient

    out = RegisterClient().invoke({"f": "read", "value": [0, None]})
    assert out["type"] == "fail" and out["error"].startswith("not-connected")


# ------------------------------------------------------------ integration
ZK_JAR = Path("/usr/share/java/zookeeper.jar")


def drive(cluster, w, n_ops: int, procs: int, rng: random.Random, fault=None) -> list[Op]:
    """A minimal sequential driver (the real runner is harness/runner.py):
    round-robin over ``procs`` clients, each on its own node; ``fault(i)`` is
    called before op i (to inject faults mid-run). A process whose op came
    back info is replaced, as the runner does."""
    w.setup(cluster.connect_string())
    hist: list[Op] = []
    t0 = time.monotonic_ns()

    def rec(typ, p, f, v, node, err=None, z=None):
        hist.append(Op(len(hist), time.monotonic_ns() - t0, typ, p, f, v, node, err, z))

    clients = {}

    def fresh(p):
        node = cluster.nodes[p % len(cluster.nodes)]
        c = w.client()
        c.open(cluster.client_address(node), node, 4.0)
        return c, node

    try:
        for p in range(procs):
            clients[p] = fresh(p)
        src = w.ops(rng)
        for i in range(n_ops):
            if fault:
                fault(i)
            slot = i % procs
            p = sorted(clients)[slot]
            c, node = clients[p]
            op = next(src)
            rec("invoke", p, op["f"], op.get("value"), node)
            r = c.invoke(op)
            rec(r["type"], p, op["f"], r.get("value"), node, r.get("error"), r.get("zxid"))
            if r["type"] == "info":
                c.close()
                del clients[p]
                clients[p + procs] = fresh(p + procs)
        for p in sorted(clients) if w.final_each_thread else sorted(clients)[:1]:
            c, node = clients[p]
            for op in w.final_ops():
                rec("invoke", p, op["f"], op.get("value"), node)
                r = c.invoke(op)
                rec(r["type"], p, op["f"], r.get("value"), node, r.get("error"), r.get("zxid"))
    finally:
        for c, _ in clients.values():
            c.close()
    return hist


@pytest.fixture(scope="module")
def zk_cluster(tmp_path_factory):
    if not ZK_JAR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{ZK_JAR} is missing and CI=true requires it")
        pytest.skip(f"Debian's zookeeper package is not installed ({ZK_JAR} missing)")
    from harness.backends.local import LocalBackend
    from harness.dbs.zookeeper import ZooKeeperDB

    cluster = LocalBackend().create(3, ZooKeeperDB(), tmp_path_factory.mktemp("zk"))
    try:
        cluster.wait_ready(90)
        yield cluster
    finally:
        cluster.teardown()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.zookeeper
@pytest.mark.parametrize("module", [register, set_workload, lock, session], ids=["register", "set", "lock", "session"])
def test_workload_against_zookeeper_with_a_pause_is_valid(zk_cluster, module):
    from harness.dbs.base import bind

    w = bind(module.make({}), zk_cluster.db)  # the workload on ZooKeeper's clients for its interface
    paused = []

    def fault(i):  # pause one follower for a stretch of the run, then resume
        if i == 15:
            leader = zk_cluster.leader()
            victim = next(n for n in zk_cluster.nodes if n != leader)
            zk_cluster.pause(victim)
            paused.append(victim)
        elif i == 27 and paused:
            zk_cluster.resume(paused.pop())

    try:
        hist = drive(zk_cluster, w, 60, 3, random.Random(5), fault)
    finally:
        for n in paused:
            zk_cluster.resume(n)
        zk_cluster.wait_ready(90)
    result = w.check(hist)
    oks = sum(1 for o in hist if o.type == "ok")
    assert oks > 20, f"too few ok ops ({oks}): {[o.error for o in hist if o.error][:5]}"
    assert result.valid is True, result.explanation


# ------------------------------------------------- outcome mapping (no server)
class _ConnectedConn:
    """Stands in for harness.dbs.zk.conn.ZkConn: always connected."""

    timeout_s = 0.2

    def __init__(self):
        self.closed = False

    def wait_connected(self):
        pass

    def last_zxid(self):
        return 42

    def peer(self):
        return "127.0.0.1:2181"

    def session_hex(self):
        return "0x7"

    def close(self):
        self.closed = True


def _raiser(exc):
    def body():
        raise exc

    return body


def test_outcome_mapping_definite_vs_indeterminate():
    from kazoo.exceptions import BadVersionError, ConnectionLoss, NoNodeError, SessionExpiredError

    from harness.dbs.zk import conn as _zk

    conn = _ConnectedConn()
    assert _zk.run(conn, lambda: 7) == {
        "type": "ok",
        "value": 7,
        "error": None,
        "zxid": 42,
        "server": "127.0.0.1:2181",
        "session": "0x7",
    }
    for exc, typ in (
        (BadVersionError(), "fail"),
        (NoNodeError(), "fail"),
        (_zk.Definite("cas-mismatch: x"), "fail"),
        (ConnectionLoss(), "info"),
        (SessionExpiredError(), "info"),
        (RuntimeError("odd"), "info"),
    ):
        out = _zk.run(conn, _raiser(exc), fail_value=[1, 2])
        assert out["type"] == typ, (exc, out)
        assert out["value"] == [1, 2]
    assert _zk.run(conn, _raiser(_zk.NotConnected("down")))["type"] == "fail"


def test_run_bounded_turns_a_stuck_call_into_info_and_closes_the_connection():
    import threading

    from harness.dbs.zk import conn as _zk

    release = threading.Event()
    conn = _ConnectedConn()
    conn.close = release.set  # closing the connection is what unblocks kazoo calls
    out = _zk.run_bounded(conn, lambda: release.wait(30), limit_s=0.2)
    assert out["type"] == "info" and out["error"].startswith("timeout")
    assert release.is_set()


def test_confirmed_close_request_is_truthy_and_decodes_its_reply():
    from kazoo.protocol.serialization import Close

    from harness.dbs.zk.session import _ConfirmedClose

    req = _ConfirmedClose()
    assert isinstance(req, Close) and bool(req) and not bool(Close())
    assert req.type == Close.type and _ConfirmedClose.deserialize(b"", 0) is True


def test_zkconn_records_a_server_reported_expiry_but_not_a_close():
    """The listener ZkConn installs sees kazoo's own state machine: an expiry (the
    server refused to resume the session) is recorded with the old session id; a
    close of our own is not."""
    from kazoo.protocol.states import KeeperState

    from harness.dbs.zk.conn import ZkConn

    conn = ZkConn()
    port = _closed_port()
    conn.open(f"127.0.0.1:{port}", 0.2)  # nothing listens: start fails, the client is closed
    try:
        zk = conn.zk
        assert zk is not None and conn.expired == []
        zk._session_id, zk._session_passwd = 0x1234, b"p" * 16
        zk._session_callback(KeeperState.CONNECTED)
        zk._session_callback(KeeperState.EXPIRED_SESSION)  # what kazoo does on timeout 0 at connect
        assert conn.expired == [0x1234]
        zk._session_id = 0x99
        zk._session_callback(KeeperState.CONNECTED)
        zk._session_callback(KeeperState.CLOSED)  # our own stop(): no evidence of expiry
        assert conn.expired == [0x1234]
    finally:
        conn.close()


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_new_session_keeps_the_last_zxid_the_client_saw():
    """kazoo zeroes last_zxid when a session ends, which would let a lagging
    server accept the next session; workloads' client keeps it."""
    from kazoo.client import KazooClient

    from harness.dbs.zk import conn as _zk

    plain, ours = KazooClient(hosts="127.0.0.1:1"), _zk._Client(hosts="127.0.0.1:1")
    for zk in (plain, ours):
        zk.last_zxid = 42
        zk._reset()
    assert plain.last_zxid == 0 and ours.last_zxid == 42
