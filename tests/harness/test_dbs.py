"""Database adapters: configs, srvr parsing, the node's setup errors."""

from __future__ import annotations

import socket
import threading

import pytest

from harness.backends.base import SetupError
from harness.dbs import squall as squall_db
from harness.dbs.base import NodePorts, four_letter_word, parse_srvr
from harness.dbs.zookeeper import ZooKeeperDB, zoo_cfg

PORTS = NodePorts(client=2101, peer=2201, election=2301,
                  peer_addresses={"n2": ("127.0.0.1", 3001, 3002), "n3": ("127.0.0.1", 3003, 3004)},
                  client_ports={"n1": 2101, "n2": 2102, "n3": 2103})

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


def test_zoo_cfg_routes_other_nodes_through_their_link_proxies(tmp_path):
    text = zoo_cfg(1, ["n1", "n2", "n3"], "n1", PORTS, tmp_path / "data")
    lines = text.splitlines()
    assert "server.1=127.0.0.1:2201:2301" in lines  # itself: real ports
    assert "server.2=127.0.0.1:3001:3002" in lines  # n1 -> n2 proxies
    assert "server.3=127.0.0.1:3003:3004" in lines
    for must in ("clientPort=2101", "clientPortAddress=127.0.0.1", "admin.enableServer=false",
                 "4lw.commands.whitelist=*", f"dataDir={tmp_path / 'data'}", "initLimit=10"):
        assert must in lines


def test_zoo_cfg_standalone_has_no_server_lines(tmp_path):
    text = zoo_cfg(1, ["n1"], "n1", PORTS, tmp_path)
    assert "server." not in text


def test_zookeeper_prepare_writes_myid_and_config(tmp_path):
    ok, why = ZooKeeperDB.available()
    if not ok:
        pytest.skip(why)
    argv, env, log = ZooKeeperDB().prepare("n2", 2, ["n1", "n2", "n3"],
                                           NodePorts(2102, 2202, 2302, {
                                               "n1": ("127.0.0.1", 1, 2), "n3": ("127.0.0.1", 3, 4)}),
                                           tmp_path)
    assert (tmp_path / "data" / "myid").read_text().strip() == "2"
    assert argv[-1] == str(tmp_path / "zoo.cfg") and "QuorumPeerMain" in argv[-2]
    assert "-Xmx256m" in argv and log == tmp_path / "n2.log"


def test_parse_srvr():
    assert parse_srvr(SRVR) == {"mode": "follower", "zxid": 0x100000004, "node_count": 5}
    assert parse_srvr("") == {"mode": "down"}
    assert parse_srvr("This ZooKeeper instance is not currently serving requests\n") == {
        "mode": "not-serving"}


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
        assert parse_srvr(four_letter_word(f"127.0.0.1:{port}", "srvr"))["mode"] == "follower"
        assert seen == [b"srvr"]
    finally:
        srv.close()
        t.join(5)
    assert four_letter_word(f"127.0.0.1:{port}", "ruok", 0.5) == ""  # nobody listens now


def test_squall_db_refuses_an_ensemble_the_node_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "usage: node --data-dir D --port P")
    with pytest.raises(SetupError, match="ensemble is not available yet"):
        squall_db.SquallDB().prepare("n1", 1, ["n1", "n2", "n3"], PORTS, tmp_path)
    argv, env, log = squall_db.SquallDB().prepare("n1", 1, ["n1"], PORTS, tmp_path)
    assert argv[1:] == ["-m", "node", "--data-dir", str(tmp_path / "data"),
                        "--host", "127.0.0.1", "--port", "2101"]
    assert log == tmp_path / "n1.log"


def test_squall_db_without_a_node_cli_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "No module named node.__main__")
    with pytest.raises(SetupError, match="does not offer --data-dir"):
        squall_db.SquallDB().prepare("n1", 1, ["n1"], PORTS, tmp_path)


def test_squall_db_ensemble_args_use_link_proxies(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "--data-dir --peers --id")
    argv, _, _ = squall_db.SquallDB().prepare("n1", 1, ["n1", "n2", "n3"], PORTS, tmp_path)
    i = argv.index("--peers")
    assert argv[argv.index("--id") + 1] == "1"
    assert argv[i + 1] == "1=127.0.0.1:2101:2201,2=127.0.0.1:2102:3001,3=127.0.0.1:2103:3003"


def test_squall_db_uses_server_id_when_the_node_spells_it_so(tmp_path, monkeypatch):
    monkeypatch.setattr(squall_db, "node_help", lambda python=None: "--data-dir --server-id --peers")
    argv, _, _ = squall_db.SquallDB().prepare("n1", 2, ["n2", "n1", "n3"], PORTS, tmp_path)
    assert argv[argv.index("--server-id") + 1] == "2" and "--id" not in argv


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
        assert cluster.node_status("n1")["mode"] == "standalone"
        cluster.kill("n1")
        assert cluster.node_status("n1")["mode"] == "down"
        cluster.start("n1")
        cluster.wait_ready(60)
        assert cluster.log_path("n1").read_text().count("squall harness: starting n1") == 2
    finally:
        cluster.teardown()
    assert cluster.pids() == {"n1": None}
