"""etcd as the third database: its command line and status (pure), its
clients against a real 3-member cluster on the local backend (partitions
through Unix-socket proxies), short `squall run --db etcd` campaigns under
partition, pause and kill, and the broken variants that must exit 1."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.backends.local import LocalBackend
from harness.dbs import etcd
from harness.dbs.base import NodeContext, NodePorts, NodeStatus
from harness.dbs.etcd_clients import EtcdClients, EtcdLockClient, EtcdRegisterClient, EtcdSetClient, EtcdWatchClient
from harness.spec import TestSpec
from tests.harness.test_campaigns import _assert_files, _latest, squall

SHORT = ["--time-limit", "6", "--nemesis-interval", "2", "--no-progress"]


def _need_etcd() -> None:
    ok, why = etcd.EtcdDB().available()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install Debian's etcd-server package: {why}")
        pytest.skip(why)


def _ctx(local: bool = True) -> NodeContext:
    ports = NodePorts(
        client=2101,
        peer=2201,
        election=2301,
        peer_addresses={
            "n2": ("n2" if not local else "127.0.0.1", 2380, 0),
            "n3": ("n3" if not local else "127.0.0.1", 2380, 0),
        },
    )
    if local:
        return NodeContext(name="n1", index=1, nodes=("n1", "n2", "n3"), dir="/x/n1", ports=ports)
    return NodeContext(
        name="n1",
        index=1,
        nodes=("n1", "n2", "n3"),
        dir="/x/n1",
        ports=ports,
        listen_host="0.0.0.0",
        host="n1",
        local=False,
    )


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_local_members_name_peers_by_unix_sockets_in_their_own_directory():
    argv = etcd.etcd_argv(_ctx(), "/usr/bin/etcd")
    assert _arg(argv, "--initial-cluster") == "n1=unix://peer-n1:2380,n2=unix://peer-n2:2380,n3=unix://peer-n3:2380"
    assert _arg(argv, "--listen-peer-urls") == _arg(argv, "--initial-advertise-peer-urls") == "unix://peer-n1:2380"
    assert _arg(argv, "--listen-client-urls") == "http://127.0.0.1:2101"
    assert _arg(argv, "--data-dir") == "data" and "--pre-vote" in argv
    assert etcd.EtcdDB().peer_socket("n2") == "peer-n2:2380"


def test_members_on_hosts_of_their_own_name_peers_by_host():
    argv = etcd.etcd_argv(_ctx(local=False), "/usr/bin/etcd")
    assert _arg(argv, "--initial-cluster") == "n1=http://n1:2201,n2=http://n2:2380,n3=http://n3:2380"
    assert _arg(argv, "--listen-peer-urls") == "http://0.0.0.0:2201"
    assert _arg(argv, "--advertise-client-urls") == "http://n1:2101"


def test_status_from_the_maintenance_api():
    reply = {
        "header": {"member_id": "11", "revision": "9"},
        "leader": "11",
        "raftTerm": "3",
        "raftIndex": "20",
        "raftAppliedIndex": "19",
        "version": "3.4.23",
    }
    st = etcd.status_from(reply, {"health": "true"})
    assert (st.role, st.serving, st.term, st.applied) == ("leader", True, 3, 19)
    assert st.details["revision"] == 9 and etcd.EtcdDB().claims_leadership(st)
    follower = etcd.status_from({**reply, "leader": "12"}, {"health": "true"})
    assert follower.role == "follower" and not etcd.EtcdDB().claims_leadership(follower)
    cut_off = etcd.status_from({**reply, "leader": "0"}, {"health": "false"})
    assert cut_off.role == "candidate" and not cut_off.serving
    assert etcd.status_from(None, None) == NodeStatus.down("no answer to the maintenance Status call")


def test_reads_settings_and_unknown_faults_are_refused_by_name():
    with pytest.raises(Exception, match="allowed: stale-reads, drop-watch-events"):
        etcd.make({"unsafe_db_fault": "lose-writes"})
    with pytest.raises(Exception, match="reads must be"):
        etcd.EtcdDB().clients("register", {"reads": "eventual"})
    with pytest.raises(Exception, match="offers no 'session' client"):
        etcd.EtcdDB().clients("session", {})


def test_clients_refuse_malformed_ops_without_a_cluster():
    for client, op in (
        (EtcdRegisterClient(), {"f": "read", "value": 3}),
        (EtcdSetClient(), {"f": "add", "value": "x"}),
        (EtcdLockClient(), {"f": "read"}),
        (EtcdWatchClient(), {"f": "write", "value": 1}),
    ):
        out = client.invoke(op)
        assert out["type"] == "fail" and "bad" in out["error"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _need_etcd()
    spec = TestSpec(name="etcd-clients", nodes=("n1", "n2", "n3"), db="etcd", nemesis=())
    c = LocalBackend().create(spec, etcd.EtcdDB(), tmp_path_factory.mktemp("etcd"))
    try:
        c.wait_ready(60)
        yield c
    finally:
        c.teardown()


def _open(client, cluster, nodes=None):
    client.open(cluster.connect_string(nodes), "any", 5.0)
    return client


@pytest.mark.integration
@pytest.mark.slow
def test_register_set_and_lock_clients_on_a_real_cluster(cluster):
    reg = _open(EtcdRegisterClient(), cluster)
    try:
        assert reg.invoke({"f": "read", "value": [1, None]})["value"] == [1, None]
        w = reg.invoke({"f": "write", "value": [1, 5]})
        assert w["type"] == "ok" and w["zxid"] > 0 and w["server"] in cluster.connect_string()
        assert reg.invoke({"f": "cas", "value": [1, [5, 7]]})["type"] == "ok"
        bad = reg.invoke({"f": "cas", "value": [1, [5, 9]]})
        assert bad["type"] == "fail" and bad["error"].startswith("cas-mismatch")
        assert reg.invoke({"f": "read", "value": [1, None]})["value"] == [1, 7]
    finally:
        reg.close()
    s = _open(EtcdSetClient(), cluster)
    try:
        assert s.invoke({"f": "add", "value": 3})["type"] == "ok"
        again = s.invoke({"f": "add", "value": 3})
        assert again["type"] == "fail" and again["error"].startswith("exists")
        assert s.invoke({"f": "final-read", "value": None})["value"] == [3]
    finally:
        s.close()
    EtcdClients("lock", "linearizable", None, ("/squall/lock/",)).setup(cluster.connect_string())
    lock = _open(EtcdLockClient(), cluster)
    try:
        a, b = lock.invoke({"f": "fenced-write"}), lock.invoke({"f": "fenced-write"})
        assert a["type"] == b["type"] == "ok", (a, b)
        assert (a["value"]["read"], b["value"]["read"]) == (0, 1)
        assert a["value"]["token"] < b["value"]["token"] and b["value"]["write_zxid"] > a["value"]["write_zxid"]
    finally:
        lock.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_watch_stream_resumes_on_another_member_after_its_member_is_killed(cluster):
    # a follower: killing the leader would fail the writes below during the election
    leader = cluster.leader()
    first = next(n for n in cluster.nodes if n != leader)
    others = [n for n in cluster.nodes if n != first]
    w = _open(EtcdWatchClient(), cluster, [first, *others])
    writer = _open(EtcdWatchClient(), cluster, others)
    try:
        opened = w.invoke({"f": "watch", "value": 0})["value"]
        assert "start" in opened
        revs = [writer.invoke({"f": "write", "value": ["k0", n]})["zxid"] for n in (1, 2)]
        cluster.kill(first)
        revs += [writer.invoke({"f": "write", "value": ["k1", n]})["zxid"] for n in (3, 4)]
        seen, deadline = [], time.monotonic() + 20
        resumed = []
        while time.monotonic() < deadline and (not seen or seen[-1] < revs[-1]):
            out = w.invoke({"f": "watch", "value": 0})["value"]
            seen += [e[0] for e in out["events"]]
            resumed += out.get("resumed", [])
            time.sleep(0.2)
        assert None not in revs and seen == revs and resumed, (seen, revs, resumed)
        final = w.invoke({"f": "final-watch", "value": None})
        assert final["type"] == "ok" and final["value"]["fence"][2] == final["value"]["events"][-1][0]
    finally:
        w.close()
        writer.close()
        cluster.start(first)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("workload", ["register", "set", "lock", "watch-stream"])
def test_etcd_is_judged_valid_under_partition_pause_and_kill(tmp_path, workload):
    _need_etcd()
    r = squall(
        [
            "run",
            "--db",
            "etcd",
            "--nodes",
            "3",
            "--workload",
            workload,
            "--nemesis",
            "partition,pause,kill",
            "--seed",
            "5",
            *SHORT,
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    _assert_files(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:], results.get("summary"))
    subs = {s["checker"]: s for s in results["result"]["details"]["results"]}
    assert subs["converged-replicas"]["valid"] is True
    assert results["client_ok_ops"] > 10
    assert len(list(Path(run_dir, "logs").glob("n*.log"))) == 3


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("workload, fault", [("register", "stale-reads"), ("watch-stream", "drop-watch-events")])
def test_a_broken_etcd_client_makes_the_run_invalid(tmp_path, workload, fault):
    _need_etcd()
    r = squall(
        [
            "run",
            "--db",
            "etcd",
            "--nodes",
            "3",
            "--workload",
            workload,
            "--nemesis",
            "partition",
            "--unsafe-db-fault",
            fault,
            "--seed",
            "5",
            *SHORT,
        ],
        tmp_path,
    )
    results = json.loads((_latest(tmp_path) / "results.json").read_text())
    assert r.returncode == 1, (r.stdout[-2000:], results.get("summary"))
    assert results["valid"] is False


def test_an_etcd_run_refuses_a_workload_etcd_cannot_serve(tmp_path):
    r = squall(["run", "--db", "etcd", "--workload", "session", "--time-limit", "1"], tmp_path)
    assert r.returncode == 3 and "session" in r.stderr and "watch-stream" in r.stderr
    r = squall(["run", "--db", "zookeeper", "--reads", "linearizable", "--time-limit", "1"], tmp_path)
    assert r.returncode == 3 and "allowed: local, sync" in r.stderr
    r = squall(["run", "--db", "etcd", "--nemesis", "partition,clock", "--time-limit", "1"], tmp_path)
    assert r.returncode == 3 and "cannot take the nemesis fault(s) clock" in r.stderr and "vDSO" in r.stderr
    assert not (tmp_path / "results").exists()


def test_all_faults_on_etcd_leave_the_clock_out():
    from harness.cli import _registry
    from harness.run_cmd import _Common, build_spec

    c = _Common(
        backend="local",
        db="etcd",
        nemesis_interval=5.0,
        nodes="3",
        time_limit=5.0,
        concurrency="2n",
        rate=10.0,
        seed=1,
        results_dir="results",
        reads=None,
        progress=False,
        unsafe_db_fault=None,
    )
    spec = build_spec(_registry(), c, "register", "all", None)
    assert "clock" not in spec.nemesis and "partition" in spec.nemesis and spec.reads == "linearizable"


def test_etcd_runs_its_own_watch_and_test_all_runs_what_etcd_serves():
    from harness.cli import _registry
    from harness.run_cmd import servable_workloads, workload_for

    db = etcd.EtcdDB()
    assert workload_for(db, "watch") == "watch-stream" and workload_for(db, "register") == "register"
    assert servable_workloads(_registry(), db) == ["lock", "register", "set", "watch-stream"]


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.slow
def test_etcd_on_docker_is_judged_valid_under_partition_and_kill(tmp_path):
    """Members in containers of the node image plus Debian's etcd-server (a
    derived image, built once), peers by host name, partitions as iptables
    rules."""
    from tests.harness.test_docker_backend import _need_docker

    _need_docker()
    r = squall(
        [
            "run",
            "--backend",
            "docker",
            "--db",
            "etcd",
            "--nodes",
            "3",
            "--workload",
            "register",
            "--nemesis",
            "partition,kill",
            "--seed",
            "3",
            *SHORT,
        ],
        tmp_path,
        timeout_s=900,
    )
    results = json.loads((_latest(tmp_path) / "results.json").read_text())
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:], results.get("summary"))
    assert results["client_ok_ops"] > 10
