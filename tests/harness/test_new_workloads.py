"""The multi, watch, queue, counter and election workloads: their op
sources, their clients' refusal of malformed ops, their composed checks on
hand-made histories, and (slow, integration) short real campaigns against
Apache ZooKeeper and the node under partition, pause and kill."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from checkers.history import Op
from harness.dbs.zk import conn as _zk
from harness.dbs.zk.counter import CounterClient
from harness.dbs.zk.election import ElectionClient
from harness.dbs.zk.multi import MultiClient
from harness.dbs.zk.queue import QueueClient
from harness.dbs.zk.watch import WatchClient
from tests.harness.test_campaigns import _assert_files, _latest, _need_node, _need_zookeeper, squall
from workloads import election, multi, queue, watch

NEW = ("multi", "watch", "queue", "counter", "election")


def _h(*ops):
    out = []
    for p, f, value, typ, res in ops:
        out.append(Op(len(out), len(out), "invoke", p, f, value))
        out.append(Op(len(out), len(out), typ, p, f, res if res is not None else value))
    return out


def test_multi_ops_are_2_to_5_op_multis_with_unique_appends():
    w = multi.MultiWorkload(keys=4, appends_per_key=5)
    ops = list(itertools.islice(w.ops(random.Random(3)), 400))
    values = [m[2] for o in ops for m in o["value"] if m[0] == "append"]
    assert len(values) == len(set(values))
    for o in ops:
        keys = {m[1] for m in o["value"]}
        assert 2 <= len(keys) + (o["f"] == "doomed-txn") <= 5
        if o["f"] == "doomed-txn":
            assert all(m[0] == "append" for m in o["value"])
    assert {o["f"] for o in ops} == {"txn", "doomed-txn"}
    assert len({m[1] for o in ops for m in o["value"]}) > 4, "keys must rotate"
    final = w.final_ops()
    assert final[0]["f"] == "txn" and all(m[0] == "r" for m in final[0]["value"])
    assert {m[1] for m in final[0]["value"]} >= {m[1] for o in ops for m in o["value"]}


def test_multi_check_doomed_commit_is_invalid_and_failed_effect_visible_is_g1a():
    ok_doomed = _h(
        (0, "doomed-txn", [["append", "k0", 1]], "ok", None),
        (1, "txn", [["r", "k0", None], ["r", "k1", None]], "ok", [["r", "k0", [1]], ["r", "k1", []]]),
    )
    r = multi.check_multi(ok_doomed)
    assert r.valid is False and "multi-atomic" in r.counterexample
    visible = _h(
        (0, "doomed-txn", [["append", "k0", 1], ["append", "k1", 2]], "fail", None),
        (1, "txn", [["r", "k0", None], ["r", "k1", None]], "ok", [["r", "k0", [1]], ["r", "k1", []]]),
    )
    r = multi.check_multi(visible)
    assert r.valid is False and r.counterexample["elle-list-append"]["anomaly_types"] == ["G1a"]
    fine = _h(
        (0, "doomed-txn", [["append", "k0", 1]], "fail", None),
        (1, "txn", [["append", "k0", 2], ["r", "k1", None]], "ok", [["append", "k0", 2], ["r", "k1", []]]),
        (1, "txn", [["r", "k0", None], ["r", "k1", None]], "ok", [["r", "k0", [2]], ["r", "k1", []]]),
    )
    assert multi.check_multi(fine).valid is True


def test_election_overlapping_leaders_are_invalid():
    h = _h(
        (0, "lead", None, "ok", {"read": 0, "wrote": 1, "lock": "a", "write_zxid": 10}),
        (1, "lead", None, "ok", {"read": 0, "wrote": 1, "lock": "b", "write_zxid": 11}),
        (2, "final-lead", None, "ok", {"read": 1, "wrote": 2, "lock": "c", "write_zxid": 12}),
    )
    r = election.check_election(h)
    assert r.valid is False and r.counterexample["lock-fencing"]["fenced"][0]["kind"] == "overlap"


def test_watch_and_queue_op_sources():
    ops = list(itertools.islice(watch.WatchWorkload().ops(random.Random(1)), 300))
    assert {o["f"] for o in ops} == set(watch.FS)
    writes = [o["value"][1] for o in ops if o["f"] == "write"]
    assert len(writes) == len(set(writes))
    puts = [o["value"] for o in itertools.islice(queue.QueueWorkload().ops(random.Random(1)), 300) if o["f"] == "put"]
    assert len({p[1] for p in puts}) == len(puts) and {p[0] for p in puts} == set(queue.QUEUES)


@pytest.mark.parametrize(
    "client, op",
    [
        (MultiClient, {"f": "txn", "value": [["write", "k0", 1]]}),
        (MultiClient, {"f": "txn", "value": []}),
        (WatchClient, {"f": "watch-read", "value": ["p0", None]}),  # p-keys carry the persistent watch
        (WatchClient, {"f": "write", "value": ["nope", 1]}),
        (QueueClient, {"f": "put", "value": ["stack", 1]}),
        (CounterClient, {"f": "add", "value": -1}),
        (ElectionClient, {"f": "abdicate"}),
    ],
)
def test_clients_refuse_malformed_ops_without_connecting(client, op):
    out = client().invoke(op)
    assert out["type"] == "fail" and "bad" in out["error"]


def test_unopened_clients_fail_definitely():
    assert MultiClient().invoke({"f": "txn", "value": [["r", "k0", None]]})["error"].startswith("not-connected")
    assert CounterClient().invoke({"f": "read"})["type"] == "fail"


def test_an_election_op_that_did_not_end_cleanly_ends_its_session(monkeypatch):
    """A contender node left by a failed or crashed op must not outlive the op:
    its session is ended (a fail reopens a new one), so the healed final
    election is not blocked by it."""
    client = ElectionClient()
    client.conn.hosts, client.conn.timeout_s = "127.0.0.1:1", 3.0
    calls: list[tuple] = []
    monkeypatch.setattr(client.conn, "close", lambda: calls.append(("close",)))
    monkeypatch.setattr(client.conn, "open", lambda hosts, t, last=0: calls.append(("open", hosts, t)))
    outcome = {"type": "info", "error": "ConnectionLoss"}
    from harness.dbs.zk import election as zk_election

    monkeypatch.setattr(zk_election._zk, "run_bounded", lambda conn, body, limit: dict(outcome))
    assert client.invoke({"f": "lead"})["type"] == "info" and calls == [("close",)]  # retired: no reopen
    calls.clear()
    outcome = {"type": "fail", "error": "not-elected"}
    assert client.invoke({"f": "lead"})["type"] == "fail" and calls == [("close",), ("open", "127.0.0.1:1", 3.0)]
    calls.clear()
    outcome = {"type": "ok", "value": {}}
    assert client.invoke({"f": "lead"})["type"] == "ok" and calls == []  # released cleanly: the session stays


def test_add_watch_request_rejects_a_bad_mode():
    with pytest.raises(ValueError, match="addWatch mode"):
        _zk.AddWatch("/x", 7)
    assert _zk.AddWatch("/x", _zk.PERSISTENT_RECURSIVE).serialize() == b"\x00\x00\x00\x02/x\x00\x00\x00\x01"
    # setWatches: relative zxid (long), then three string vectors
    assert _zk.SetWatches(5, ["/a"], [], []).serialize() == (
        b"\x00" * 7 + b"\x05" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02/a" + b"\x00" * 8
    )


def test_arrival_log_helpers():
    log = [
        ("reply", 1),
        ("event", 3, "/k"),
        ("state", "SUSPENDED", 9),
        ("state", "CONNECTED", 9),
        ("event", 3, "/k"),
        ("event", 3, "/other"),
        ("reply", 2),
    ]
    assert _zk.count_events(log, 0, 6, _zk.CHANGED_EVENT, "/k") == 2
    assert not _zk.same_connection(log, 0, 6) and _zk.same_connection(log, 4, 6)
    assert _zk.zxid_at_break(log, 0) == 9 and _zk.zxid_at_break(log, 4) is None
    assert _zk.trace(log, 0, 6, "/k") == [
        ["event", 3],
        ["state", "SUSPENDED", 9],
        ["state", "CONNECTED", 9],
        ["event", 3],
    ]


# ------------------------------------------------------------ campaigns
FAULTS = ("partition", "pause", "kill")
SHORT10 = ["--time-limit", "10", "--nemesis-interval", "3", "--no-progress"]


def _campaign(tmp_path, db: str, workload: str, fault: str):
    args = ["run", "--db", db, "--nodes", "3", "--workload", workload, "--nemesis", fault, "--seed", "11", *SHORT10]
    r = squall(args, tmp_path)
    run_dir = _latest(tmp_path)
    _assert_files(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    explanation = (results.get("result") or {}).get("explanation", "")
    assert r.returncode == 0, (
        f"{db} {workload}/{fault}: exit {r.returncode}: {results.get('summary')}\n"
        f"{explanation[:3000]}\n{r.stderr[-3000:]}"
    )
    assert results["valid"] is True


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.zookeeper
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("workload", NEW)
def test_zookeeper_is_judged_valid(tmp_path, workload, fault):
    _need_zookeeper()
    _campaign(tmp_path, "zookeeper", workload, fault)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("workload", NEW)
def test_the_node_is_judged_valid(tmp_path, workload, fault):
    _need_node()
    _campaign(tmp_path, "squall", workload, fault)


def _values(name, ops):
    if name == "queue":
        return [o["value"][1] for o in ops if o["f"] == "put"]
    if name == "watch":
        return [o["value"][1] for o in ops if o["f"] == "write"] + [
            n for o in ops if o["f"] == "write-burst" for n in o["value"][1]
        ]
    if name == "multi":
        return [m[2] for o in ops for m in o["value"] if m[0] == "append"]
    return []


@pytest.mark.parametrize("name", ["multi", "watch", "queue", "counter", "election"])
def test_each_client_slot_has_its_own_source_with_values_unique_across_slots(name):
    """The runner gives every client slot its own op source (``ops(rng, thread=s, threads=n)``,
    see docs/running.md "Seeds"); values a checker relies on being unique stay unique across slots."""
    from harness.cli import _registry

    workload = _registry().workloads[name]({})
    per_slot = [list(itertools.islice(workload.ops(random.Random(s), thread=s, threads=3), 300)) for s in range(3)]
    assert all(per_slot)
    values = [v for ops in per_slot for v in _values(name, ops)]
    assert len(values) == len(set(values)), f"{name}: a value repeats across client slots"


@pytest.fixture
def one_node(tmp_path):
    """A standalone node on the local backend, torn down after the test."""
    _need_node()
    from harness.backends.local import LocalBackend
    from harness.dbs.squall import SquallDB

    cluster = LocalBackend().create(1, SquallDB(), tmp_path)
    try:
        cluster.wait_ready(60)
        yield cluster
    finally:
        cluster.teardown()


@pytest.mark.integration
@pytest.mark.slow
def test_queue_puts_report_the_sequential_znode_and_the_recipes_still_consume_it(one_node):
    """A put is the recipe's own sequential create, kept with its name and creation zxid
    (``[q, n, path, czxid]``) for the sequential-name check; kazoo's gets consume those
    entries first in, first out, and the checker finds the names unique and increasing."""
    from harness.dbs.zk.queue import ITEMS, QueueClients

    cluster = one_node
    clients = QueueClients({})
    clients.setup(cluster.connect_string())
    c = clients.client()
    node = cluster.nodes[0]
    c.open(cluster.client_address(node), node, 5.0)
    hist: list = []

    def op(f, value):
        hist.append(Op(len(hist), len(hist), "invoke", 0, f, value))
        r = c.invoke({"f": f, "value": value})
        hist.append(Op(len(hist), len(hist), r["type"], 0, f, r.get("value"), node, r.get("error"), r.get("zxid")))
        return r

    try:
        puts = [op("put", [q, n]) for n, q in enumerate(["queue", "locking-queue"] * 3)]
        assert all(r["type"] == "ok" for r in puts), puts
        for r in puts:
            q, n, path, czxid = r["value"]
            assert path.startswith(f"{ITEMS[q]}/entry-") and path[-10:].isdigit() and czxid > 0
        assert [r["value"][3] for r in puts] == sorted(r["value"][3] for r in puts)
        assert op("get", ["queue", None])["value"] == ["queue", 0]
        assert op("get", ["locking-queue", None])["value"] == ["locking-queue", 1]
        final = op("final-read", None)
        assert final["value"] == {"queue": [2, 4], "locking-queue": [3, 5]}
    finally:
        c.close()
    r = queue.QueueWorkload().check(hist)
    assert r.valid is True and "6 sequential names unique and increasing" in r.summary, r.summary


@pytest.mark.integration
@pytest.mark.slow
def test_child_keys_arm_child_watches_that_fire_on_creates_and_deletes(one_node):
    """A watch-read of a child key lists its children under a one-shot child watch, with the
    key's cversion as its version; another client's writes create and then delete a child, and
    each fires the watch before the next read shows the new cversion. A write to w1 sets the
    same data every time and is still a new version that fires the data watch."""
    from harness.dbs.zk.watch import WatchClients

    cluster = one_node
    clients = WatchClients({})
    clients.setup(cluster.connect_string())
    node = cluster.nodes[0]
    reader, writer = clients.client(), clients.client()
    for c in (reader, writer):
        c.open(cluster.client_address(node), node, 5.0)
    try:
        first = reader.invoke({"f": "watch-read", "value": ["c0", None]})
        assert first["type"] == "ok" and first["value"]["data"] == "" and "armed" not in first["value"]
        made = writer.invoke({"f": "write", "value": ["c0", 7]})
        assert made["type"] == "ok" and made["value"] == ["c0", "+n7", None]
        seen = reader.invoke({"f": "watch-read", "value": ["c0", None]})["value"]
        assert seen["data"] == "n7" and seen["version"] == first["value"]["version"] + 1
        assert seen["armed"] == first["value"]["version"] and seen["fired"] is True
        gone = writer.invoke({"f": "write", "value": ["c0", 9]})  # every other write deletes its oldest child
        assert gone["type"] == "ok" and gone["value"] == ["c0", "-n7", None]
        assert writer.invoke({"f": "write", "value": ["c0", 11]})["value"] == ["c0", "+n11", None]
        last = reader.invoke({"f": "watch-read", "value": ["c0", None]})["value"]
        assert last["data"] == "n11" and last["version"] == seen["version"] + 2 and last["fired"] is True
        quiet = reader.invoke({"f": "watch-read", "value": ["c0", None]})["value"]
        assert quiet["version"] == last["version"] and quiet["fired"] is False
        # a burst: three writes pipelined on one connection apply in the order sent
        burst = writer.invoke({"f": "write-burst", "value": ["w0", [21, 23, 25]]})
        assert burst["type"] == "ok", burst
        key, pairs = burst["value"]
        assert key == "w0" and [d for d, _ in pairs] == ["21", "23", "25"]
        assert [v for _, v in pairs] == list(range(pairs[0][1], pairs[0][1] + 3))
        # e0 comes and goes: an exists watch fires on its creation and on its deletion
        gone0 = reader.invoke({"f": "exists-read", "value": ["e0", None]})["value"]
        assert gone0["state"] == "absent" and "armed" not in gone0
        assert writer.invoke({"f": "write", "value": ["e0", 31]})["value"] == ["e0", "+", None]
        there = reader.invoke({"f": "exists-read", "value": ["e0", None]})["value"]
        assert there["state"].startswith("0x") and there["armed"] == "absent" and there["fired"] is True
        assert writer.invoke({"f": "write", "value": ["e0", 33]})["value"] == ["e0", "-", None]
        gone = reader.invoke({"f": "exists-read", "value": ["e0", None]})["value"]
        assert gone["state"] == "absent" and gone["armed"] == there["state"] and gone["fired"] is True
        # w1 takes the same data every time, and each write is still a new version that fires
        armed = reader.invoke({"f": "watch-read", "value": ["w1", None]})["value"]
        same = writer.invoke({"f": "write", "value": ["w1", 13]})["value"]
        assert same == ["w1", "same", armed["version"] + 1]
        again = writer.invoke({"f": "write", "value": ["w1", 15]})["value"]
        assert again == ["w1", "same", armed["version"] + 2]
        after = reader.invoke({"f": "watch-read", "value": ["w1", None]})["value"]
        assert after["data"] == "same" and after["version"] == armed["version"] + 2 and after["fired"] is True
    finally:
        for c in (reader, writer):
            c.close()
