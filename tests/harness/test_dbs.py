"""Databases on the seam (harness/dbs/): launches, statuses, the shared
wait-until-ready and leader choice, workloads bound to a database's clients,
and the node's setup errors."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from harness.backends.base import SetupError
from harness.dbs import squall as squall_db
from harness.dbs.base import (
    DB,
    BoundWorkload,
    DBBase,
    Installs,
    NodeContext,
    NodeLaunch,
    NodePorts,
    NodeStatus,
    NotOffered,
    Primary,
    Snapshots,
    UnsafeFaults,
    bind,
    leader_of,
    wait_until_ready,
    write_launch_files,
)
from harness.dbs.zk import SNAP_COUNT
from harness.dbs.zk.admin import four_letter_word, parse_srvr, srvr_status, status_from_srvr
from harness.dbs.zookeeper import ZooKeeperDB, zoo_cfg
from workloads import interfaces, register

PORTS = NodePorts(
    client=2101,
    peer=2201,
    election=2301,
    peer_addresses={"n2": ("127.0.0.1", 3001, 3002), "n3": ("127.0.0.1", 3003, 3004)},
    client_ports={"n1": 2101, "n2": 2102, "n3": 2103},
)

SRVR = """Zookeeper version: 3.8.0-11, built on 2024-06-16 00:00 UTC
Latency min/avg/max: 0/0.0/0
Received: 12
Sent: 11
Connections: 1
Outstanding: 0
Zxid: 0x100000004
Mode: follower
Node count: 5
"""


def ctx(
    tmp_path: Path, name: str = "n1", index: int = 1, nodes=("n1", "n2", "n3"), ports: NodePorts = PORTS, **kw
) -> NodeContext:
    return NodeContext(name=name, index=index, nodes=tuple(nodes), dir=str(tmp_path), ports=ports, **kw)


# ------------------------------------------------------------ ZooKeeper


def test_zoo_cfg_routes_other_nodes_through_their_link_proxies(tmp_path):
    lines = zoo_cfg(ctx(tmp_path)).splitlines()
    assert "server.1=127.0.0.1:2201:2301" in lines  # itself: real ports
    assert "server.2=127.0.0.1:3001:3002" in lines  # n1 -> n2 proxies
    assert "server.3=127.0.0.1:3003:3004" in lines
    for must in (
        "clientPort=2101",
        "clientPortAddress=127.0.0.1",
        "admin.enableServer=false",
        "4lw.commands.whitelist=*",
        f"dataDir={tmp_path / 'data'}",
        "initLimit=10",
        f"snapCount={SNAP_COUNT}",  # snapshots within a campaign
    ):
        assert must in lines
    assert "quorumListenOnAllIPs=true" not in lines


def test_zoo_cfg_on_a_host_of_its_own_listens_everywhere_and_names_itself(tmp_path):
    ports = NodePorts(2181, 2888, 3888, {"n2": ("n2", 2888, 3888), "n3": ("n3", 2888, 3888)})
    lines = zoo_cfg(ctx(tmp_path, ports=ports, listen_host="0.0.0.0", host="n1", local=False)).splitlines()
    assert "clientPortAddress=0.0.0.0" in lines and "quorumListenOnAllIPs=true" in lines
    assert "server.1=n1:2888:3888" in lines and "server.2=n2:2888:3888" in lines


def test_zoo_cfg_standalone_has_no_server_lines(tmp_path):
    assert "server." not in zoo_cfg(ctx(tmp_path, nodes=("n1",)))


def test_zookeeper_launch_has_the_config_and_myid_as_files(tmp_path):
    ok, why = ZooKeeperDB.available()
    if not ok:
        pytest.skip(why)
    launch = ZooKeeperDB().prepare(
        ctx(
            tmp_path, "n2", 2, ports=NodePorts(2102, 2202, 2302, {"n1": ("127.0.0.1", 1, 2), "n3": ("127.0.0.1", 3, 4)})
        )
    )
    assert launch.files["data/myid"] == "2\n" and "clientPort=2102" in launch.files["zoo.cfg"]
    assert launch.argv[-1] == str(tmp_path / "zoo.cfg") and "QuorumPeerMain" in launch.argv[-2]
    assert "-Xmx256m" in launch.argv and launch.log == "n2.log"
    write_launch_files(tmp_path, launch)  # what every backend does with them
    assert (tmp_path / "data" / "myid").read_text() == "2\n" and (tmp_path / "zoo.cfg").exists()


def test_zookeeper_elsewhere_uses_that_hosts_java_and_debian_jars(tmp_path):
    launch = ZooKeeperDB(java="/opt/odd/java").prepare(ctx(tmp_path, local=False, listen_host="0.0.0.0"))
    assert launch.argv[0] == "java" and "/usr/share/java/zookeeper.jar" in launch.argv[launch.argv.index("-cp") + 1]
    needs = ZooKeeperDB().host_needs()
    assert "zookeeper" in needs.debian_packages and needs.probe and not needs.project


def test_srvr_becomes_a_status():
    assert parse_srvr(SRVR) == {"mode": "follower", "zxid": 0x100000004, "node_count": 5}
    assert parse_srvr("") == {"mode": "down"}
    assert parse_srvr("This ZooKeeper instance is not currently serving requests\n") == {"mode": "not-serving"}
    st = status_from_srvr(SRVR)
    assert (st.role, st.serving, st.term, st.applied) == ("follower", True, 1, 0x100000004)
    assert status_from_srvr("This ZooKeeper instance is not currently serving requests\n").serving is False
    assert status_from_srvr(SRVR.replace("follower", "leader")).claims_leadership


def test_four_letter_word_against_a_fake_server():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    seen = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            seen.append(conn.recv(4))
            conn.sendall(SRVR.encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        assert srvr_status(f"127.0.0.1:{port}").role == "follower"
        assert seen == [b"srvr"]
    finally:
        srv.close()
        t.join(5)
    assert four_letter_word(f"127.0.0.1:{port}", "ruok", 0.5) == ""  # nobody listens now
    down = ZooKeeperDB().status(f"127.0.0.1:{port}", 0.5)
    assert down.role == "down" and not down.serving and "no answer" in down.details["error"]


# ------------------------------------------------------------ the node


def test_squall_db_refuses_an_ensemble_the_node_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "usage: node --data-dir D --port P")
    with pytest.raises(SetupError, match="ensemble is not available yet"):
        squall_db.SquallDB().prepare(ctx(tmp_path))
    launch = squall_db.SquallDB().prepare(ctx(tmp_path, nodes=("n1",)))
    assert launch.argv[1:] == [
        "-m",
        "node",
        "--data-dir",
        str(tmp_path / "data"),
        "--host",
        "127.0.0.1",
        "--port",
        "2101",
    ]
    assert launch.log == "n1.log" and launch.env["PYTHONPATH"].startswith(str(squall_db.PROJECT_ROOT))


def test_squall_db_snapshots_within_a_campaign(tmp_path):
    """The node snapshots every SNAP_COUNT transactions in a campaign, as ZooKeeper's snapCount."""
    argv = squall_db.SquallDB().prepare(ctx(tmp_path, nodes=("n1",))).argv
    assert argv[argv.index("--snapshot-every") + 1] == str(SNAP_COUNT) and SNAP_COUNT < 1000


def test_squall_db_without_a_node_cli_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "No module named node.__main__")
    with pytest.raises(SetupError, match="does not offer --data-dir"):
        squall_db.SquallDB().prepare(ctx(tmp_path, nodes=("n1",)))


def test_squall_db_ensemble_args_use_link_proxies(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "--data-dir --peers --id")
    argv = squall_db.SquallDB().prepare(ctx(tmp_path)).argv
    assert argv[argv.index("--id") + 1] == "1"
    assert argv[argv.index("--peers") + 1] == "1=127.0.0.1:2101:2201,2=127.0.0.1:2102:3001,3=127.0.0.1:2103:3003"


def test_squall_db_in_a_container_listens_everywhere_names_itself_and_uses_that_python(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "--data-dir --peers --id")
    ports = NodePorts(
        2181, 2888, 3888, {"n2": ("n2", 2888, 3888), "n3": ("n3", 2888, 3888)}, {"n1": 2181, "n2": 2181, "n3": 2181}
    )
    launch = squall_db.SquallDB().prepare(
        ctx(tmp_path, ports=ports, listen_host="0.0.0.0", host="n1", python="/opt/squall/bin/python", local=False)
    )
    argv = launch.argv
    assert argv[0] == "/opt/squall/bin/python" and argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--peers") + 1] == "1=n1:2181:2888,2=n2:2181:2888,3=n3:2181:2888"
    assert "PYTHONPATH" not in launch.env  # the image has the project installed
    assert squall_db.SquallDB().host_needs().project


def test_squall_db_uses_server_id_when_the_node_spells_it_so(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "--data-dir --server-id --peers")
    argv = squall_db.SquallDB().prepare(ctx(tmp_path, "n1", 2, nodes=("n2", "n1", "n3"))).argv
    assert argv[argv.index("--server-id") + 1] == "2" and "--id" not in argv


def test_the_unsafe_fault_travels_through_prepare_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "--data-dir --peers --id")
    argv = squall_db.make({"unsafe_db_fault": "lose-writes"}).prepare(ctx(tmp_path)).argv
    assert argv[argv.index("--unsafe-test-fault") + 1] == "lose-writes"
    assert "--unsafe-test-fault" not in squall_db.make({}).prepare(ctx(tmp_path)).argv
    with pytest.raises(SetupError, match="unknown squall test fault 'gremlins'"):
        squall_db.make({"unsafe_db_fault": "gremlins"})


def test_both_zookeeper_protocol_databases_offer_every_interface_and_the_abilities():
    for db in (squall_db.SquallDB(), ZooKeeperDB()):
        assert isinstance(db, DB) and isinstance(db, Primary) and isinstance(db, Snapshots)
        assert isinstance(db, Installs)
        # every interface but etcd's revision-ordered watch stream
        assert set(db.interfaces) == set(interfaces.INTERFACES) - {"watch-stream"}
        for name in db.interfaces:
            clients = db.clients(name, {})
            assert clients.converge_paths and callable(clients.setup) and callable(clients.client)
        with pytest.raises(NotOffered, match="offers no 'bank' client"):
            db.clients("bank", {})
    assert isinstance(squall_db.SquallDB(), UnsafeFaults) and not isinstance(ZooKeeperDB(), UnsafeFaults)


def test_launch_paths_must_stay_in_the_node_directory():
    with pytest.raises(SetupError, match="relative to the node's directory"):
        NodeLaunch(["x"], files={"../escape": "no"})
    with pytest.raises(SetupError, match="relative"):
        NodeLaunch(["x"], log="/tmp/n1.log")
    with pytest.raises(SetupError, match="non-empty list of strings"):
        NodeLaunch([])


# --------------------------------------------- readiness and the leader


class _Scripted(DBBase):
    """A database whose nodes answer from a script of statuses."""

    name = "scripted"

    def __init__(self, script, primary=True):
        self.script = script  # address -> list of NodeStatus, one popped per ask (the last repeats)
        if primary:
            self.claims_leadership = lambda st: st.claims_leadership

    def prepare(self, node):
        return NodeLaunch(["true"])

    def status(self, address, timeout_s=1.0):
        answers = self.script[address]
        return answers.pop(0) if len(answers) > 1 else answers[0]


LEADER = NodeStatus("leader", True, term=2, applied=10)
FOLLOWER = NodeStatus("follower", True, term=2, applied=9)
DOWN = NodeStatus.down("refused")


def _wait(db, timeout_s=5.0):
    t = [0.0]

    def sleep(s):
        t[0] += s

    return wait_until_ready(db, lambda: {"n1": "a1", "n2": "a2"}, timeout_s, sleep=sleep, clock=lambda: t[0])


def test_ready_once_every_node_serves_and_one_leads():
    db = _Scripted({"a1": [DOWN, DOWN, LEADER], "a2": [FOLLOWER]})
    found = _wait(db)
    assert found["n1"].role == "leader" and leader_of(db, found) == "n1"


def test_two_claiming_leadership_is_not_ready_and_the_newest_term_leads():
    old = NodeStatus("leader", True, term=1, applied=50)
    db = _Scripted({"a1": [old], "a2": [LEADER]})
    with pytest.raises(SetupError, match=r"expected one leader, nodes claiming it: \['n1', 'n2'\]"):
        _wait(db, 1.0)
    assert leader_of(db, {"n1": old, "n2": LEADER}) == "n2"  # term 2 beats more applied in term 1


def test_not_serving_times_out_naming_the_nodes_and_what_they_said():
    db = _Scripted({"a1": [DOWN], "a2": [FOLLOWER]})
    with pytest.raises(SetupError, match=r"nodes \['n1'\] did not answer as serving \(n1: down \(refused\)\)"):
        _wait(db, 1.0)


def test_a_leaderless_database_is_ready_when_every_node_serves():
    member = NodeStatus("serving", True)
    db = _Scripted({"a1": [member], "a2": [member]}, primary=False)
    assert not isinstance(db, Primary)
    assert set(_wait(db)) == {"n1", "n2"} and leader_of(db, {"n1": LEADER}) is None


def test_a_dead_process_ends_the_wait_at_once():
    def gone():
        raise SetupError("node n1 is not running (exit code 1)")

    with pytest.raises(SetupError, match="not running"):
        wait_until_ready(_Scripted({"a1": [DOWN]}), lambda: {"n1": "a1"}, 60, check_running=gone)


# ------------------------------------------------- workloads on databases


def test_a_workload_runs_on_the_clients_the_database_offers():
    w = register.make({"reads": "sync"})
    bound = bind(w, ZooKeeperDB())
    assert isinstance(bound, BoundWorkload) and bound.name == "register" and bound.check == w.check
    assert bound.clients.reads == "sync"  # the workload's settings reached the clients
    assert bound.converge_paths == ("/squall/register",)
    assert type(bound.client()).__name__ == "RegisterClient"


def test_a_database_without_the_interface_cannot_serve_the_workload():
    class Nothing(_Scripted):
        interfaces = ("set",)

    with pytest.raises(
        NotOffered,
        match="cannot serve the register workload: it offers no 'register' client "
        r"\(it offers: set\)",
    ):
        bind(register.make({}), Nothing({}))


@pytest.mark.integration
def test_squall_node_standalone_through_the_local_backend(tmp_path):
    """The bundled node starts, reports standalone, survives kill + restart."""
    from harness.backends.local import LocalBackend

    help_text = squall_db.node_help()
    if "--data-dir" not in help_text:
        pytest.skip("the node's CLI (python -m node --data-dir ...) is not there yet")
    cluster = LocalBackend().create(1, squall_db.SquallDB(), tmp_path)
    try:
        cluster.wait_ready(60)
        assert cluster.leader() == "n1"
        assert cluster.node_status("n1").role == "standalone"
        cluster.kill("n1")
        assert cluster.node_status("n1").role == "down"
        cluster.start("n1")
        cluster.wait_ready(60)
        assert cluster.log_path("n1").read_text().count("squall harness: starting n1") == 2
    finally:
        cluster.teardown()
    assert cluster.pids() == {"n1": None}
