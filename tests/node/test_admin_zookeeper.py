"""The AdminServer side by side with Apache ZooKeeper 3.8's: command names, aliases and JSON keys."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from node.admin import commands
from tests.browser.launcher import AdminNode
from tests.node.servers import free_port, zookeeper_installed, zookeeper_standalone

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Keys squall adds that ZooKeeper does not have (documented in docs/webui.md)
SQUALL_KEYS = {
    "dump": {"session_timeouts"},
    "environment": {"python.version", "python.implementation"},
    "monitor": {"data_dir_size", "fsync_count", "last_zxid", "log_dir_size"},
}  # test_mntr.py's EXTRA
# Keys of ZooKeeper's that this node leaves out because it has no true value for them (docs/webui.md)
LEFT_OUT = {
    "server_stats": {"client_response"},
    "stats": {"client_response"},
    "configuration": {"client_port_listen_backlog"},
    "dump": {"expiry_time_to_session_ids"},
}
NESTED_LEFT_OUT = {
    "fsync_threshold_exceed_count",
    "client_response_stats",
    "provider_null",
    "auth_failed_count",
    "non_mtlsremote_conn_count",
    "non_mtlslocal_conn_count",
}
CONNECTION_LEFT_OUT = {
    "interest_ops",
    "last_operation",
    "established",
    "last_cxid",
    "last_response_time",
    "last_latency",
    "min_latency",
    "avg_latency",
    "max_latency",
}


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _load(base: str, client: KazooClient) -> dict[str, dict]:
    client.create("/w", b"abc")
    client.get("/w", watch=lambda e: None)
    client.create("/e", b"", ephemeral=True)
    return {name: get(f"{base}/commands/{name}") for name in commands.COMMANDS if name != "ensemble"}


@pytest.fixture(scope="module")
def zookeeper_answers(tmp_path_factory) -> tuple[set[str], dict[str, dict]]:
    if not zookeeper_installed():
        pytest.skip("Apache ZooKeeper is not installed")
    base_dir = tmp_path_factory.mktemp("zk")
    port = free_port()
    zk = zookeeper_standalone(
        base_dir, tick_ms=100, extra_config={"admin.serverPort": str(port), "admin.serverAddress": "127.0.0.1"}
    )
    cfg = base_dir / "zoo.cfg"
    cfg.write_text(cfg.read_text().replace("admin.enableServer=false\n", "admin.enableServer=true\n"))
    zk.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/commands", timeout=5) as r:
                    names = set(re.findall(r'href="/commands/([a-z_]+)"', r.read().decode()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client = KazooClient(zk.address, timeout=10)
        client.start(timeout=30)
        try:
            return names, _load(base, client)
        finally:
            client.stop()
            client.close()
    finally:
        zk.stop()


@pytest.fixture()
def our_answers(tmp_path: Path) -> dict[str, dict]:
    node = AdminNode(tmp_path / "data").start()
    try:
        client = KazooClient(hosts=node.hosts, timeout=10)
        client.start(timeout=15)
        try:
            return _load(node.admin_url, client)
        finally:
            client.stop()
            client.close()
    finally:
        node.stop()


def test_every_command_and_alias_is_zookeepers(zookeeper_answers) -> None:
    names, _ = zookeeper_answers
    ours = set(commands.COMMANDS) - {"ensemble"}
    assert ours <= names, sorted(ours - names)
    assert {"monitor", "stats", "connections", "ruok", "configuration", "leader"} <= ours


def test_json_keys_are_zookeepers(zookeeper_answers, our_answers) -> None:
    _, theirs = zookeeper_answers
    for name, mine in our_answers.items():
        if name == "leader":  # standalone on both: ZooKeeper's error, word for word
            assert mine == theirs[name] == {"command": "leader", "error": "server is not initialized"}
            continue
        assert mine["command"] == theirs[name]["command"] == name
        extra = set(mine) - set(theirs[name]) - SQUALL_KEYS.get(name, set())
        assert not extra, (name, sorted(extra))
        missing = set(theirs[name]) - set(mine) - LEFT_OUT.get(name, set())
        if name in ("environment", "monitor"):
            continue  # JVM properties; the mntr key set is compared in test_mntr.py
        assert not missing, (name, sorted(missing))
    for name in ("server_stats", "stats"):
        inner_mine, inner_theirs = our_answers[name]["server_stats"], theirs[name]["server_stats"]
        assert set(inner_mine) <= set(inner_theirs), sorted(set(inner_mine) - set(inner_theirs))
        assert set(inner_theirs) - set(inner_mine) <= NESTED_LEFT_OUT, sorted(set(inner_theirs) - set(inner_mine))
    mine_c, theirs_c = our_answers["connections"]["connections"][0], theirs["connections"]["connections"][0]
    assert set(mine_c) <= set(theirs_c) and set(theirs_c) - set(mine_c) <= CONNECTION_LEFT_OUT
    assert set(our_answers["stats"]["connections"][0]) == set(theirs["stats"]["connections"][0]) - {"interest_ops"}
    monitor_mine, monitor_theirs = our_answers["monitor"], theirs["monitor"]
    for key in ("znode_count", "ephemerals_count", "watch_count", "approximate_data_size", "global_sessions"):
        assert monitor_mine[key] == monitor_theirs[key], key
    assert type(our_answers["connections"]["connections"][0]["session_id"]) is int
