"""mntr carries ZooKeeper's keys with true values: data size, counts, fds, dir sizes, a leader's followers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from node.admin.four_letter import (
    approximate_data_size,
    leader_follower_metrics,
    open_fd_count,
    parse_whitelist,
    storage_size,
)
from node.config import NodeConfig
from node.server import BackgroundNode
from tests.node.servers import four_letter_word, free_port, zookeeper_installed, zookeeper_standalone
from tests.node.test_ensemble import Ensemble, make_ensemble  # noqa: F401  (the fixture)

# ZooKeeper 3.8 mntr keys that have a meaning for this node; every one must be there (docs/node.md lists
# the others and why they are left out).
MEANINGFUL = {
    "zk_version",
    "zk_server_state",
    "zk_avg_latency",
    "zk_max_latency",
    "zk_min_latency",
    "zk_packets_received",
    "zk_packets_sent",
    "zk_num_alive_connections",
    "zk_outstanding_requests",
    "zk_znode_count",
    "zk_watch_count",
    "zk_ephemerals_count",
    "zk_approximate_data_size",
    "zk_open_file_descriptor_count",
    "zk_max_file_descriptor_count",
    "zk_global_sessions",
    "zk_local_sessions",
    "zk_uptime",
}
# squall's own additions (not in ZooKeeper's mntr; ZooKeeper has the dir sizes in `dirs` only)
EXTRA = {"zk_fsync_count", "zk_last_zxid", "zk_data_dir_size", "zk_log_dir_size"}
LEADER_ONLY = {
    "zk_learners",
    "zk_followers",
    "zk_synced_followers",
    "zk_synced_non_voting_followers",
    "zk_synced_observers",
    "zk_pending_syncs",
}


def mntr(host: str, port: int) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in four_letter_word(host, port, "mntr").splitlines())


def test_approximate_data_size_is_zookeepers_formula() -> None:
    fresh = [("/", b""), ("/zookeeper", b""), ("/zookeeper/quota", b""), ("/zookeeper/config", b"")]
    assert approximate_data_size(fresh) == 1 + 10 + 16 + 17
    assert approximate_data_size(fresh + [("/x", b"abc"), ("/e", None)]) == 44 + 5 + 2
    assert approximate_data_size([("/", b"ab"), ("/\U0001f600", b"")]) == 1 + 2 + 2 + 3  # root data twice; UTF-16


def test_open_fd_count_follows_the_process(tmp_path: Path) -> None:
    before = open_fd_count()
    with open(tmp_path / "f", "w"):
        assert open_fd_count() == before + 1
    assert open_fd_count() == before == len(os.listdir(f"/proc/{os.getpid()}/fd")) - 1


def test_storage_size_skips_the_text_log(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a").write_bytes(b"x" * 10)
    (tmp_path / "b").write_bytes(b"y" * 5)
    (tmp_path / "squall-node.log").write_text("noise")
    assert storage_size(tmp_path) == 15


def test_leader_follower_metrics() -> None:
    got = dict(leader_follower_metrics([(True, True), (True, False), (False, False)]))
    assert got == {
        "zk_learners": 2,
        "zk_followers": 2,
        "zk_synced_followers": 1,
        "zk_synced_non_voting_followers": 0,
        "zk_synced_observers": 0,
        "zk_pending_syncs": 1,
    }


def _same_ops(hosts: str) -> KazooClient:
    c = KazooClient(hosts)
    c.start(timeout=30)
    c.create("/x", b"abc")
    c.create("/e", b"12345", ephemeral=True)
    c.create("/d\u00e9j\u00e0", b"")
    c.exists("/x", watch=lambda e: None)
    return c


def test_standalone_values_are_true(tmp_path: Path) -> None:
    cfg = NodeConfig(
        data_dir=tmp_path / "d", port=free_port(), tick_ms=100, four_letter_words=parse_whitelist("mntr")
    ).validate()
    with BackgroundNode(cfg):
        c = _same_ops(f"127.0.0.1:{cfg.port}")
        try:
            m = mntr("127.0.0.1", cfg.port)
        finally:
            c.stop()
            c.close()
    assert MEANINGFUL | EXTRA <= m.keys() and not (LEADER_ONLY & m.keys())
    assert int(m["zk_approximate_data_size"]) == 44 + 5 + 7 + 5  # /x abc, /e 12345, /déjà
    assert (m["zk_znode_count"], m["zk_ephemerals_count"], m["zk_watch_count"]) == ("8", "1", "1")
    assert int(m["zk_open_file_descriptor_count"]) > 0 and int(m["zk_max_file_descriptor_count"]) != 0
    assert int(m["zk_data_dir_size"]) > 0 and m["zk_data_dir_size"] == m["zk_log_dir_size"]


@pytest.mark.slow
@pytest.mark.integration
def test_key_set_and_values_against_zookeeper(tmp_path: Path) -> None:
    """The same operations on ZooKeeper 3.8 and on the node: the meaningful keys exist on both, the counts agree."""
    if not zookeeper_installed():
        pytest.skip("Apache ZooKeeper is not installed")
    zk = zookeeper_standalone(tmp_path / "zk", tick_ms=100).start()
    try:
        deadline = time.monotonic() + 60
        while not four_letter_word(zk.host, zk.port, "mntr").startswith("zk_") and time.monotonic() < deadline:
            time.sleep(0.1)  # "not currently serving requests" right after ruok
        c = _same_ops(zk.address)
        theirs = mntr(zk.host, zk.port)
        c.stop()
        c.close()
    finally:
        zk.stop()
    cfg = NodeConfig(
        data_dir=tmp_path / "d", port=free_port(), tick_ms=100, four_letter_words=parse_whitelist("*")
    ).validate()
    with BackgroundNode(cfg):
        c = _same_ops(f"127.0.0.1:{cfg.port}")
        try:
            ours = mntr("127.0.0.1", cfg.port)
        finally:
            c.stop()
            c.close()
    assert MEANINGFUL <= theirs.keys(), sorted(MEANINGFUL - theirs.keys())  # the names are ZooKeeper's
    assert MEANINGFUL <= ours.keys(), sorted(MEANINGFUL - ours.keys())
    assert not (EXTRA & theirs.keys()), "a squall-only key is ZooKeeper's after all: move it to MEANINGFUL"
    for key in (
        "zk_approximate_data_size",
        "zk_znode_count",
        "zk_ephemerals_count",
        "zk_watch_count",
        "zk_global_sessions",
        "zk_local_sessions",
        "zk_server_state",
        "zk_outstanding_requests",
    ):
        assert ours[key] == theirs[key], (key, ours[key], theirs[key])


@pytest.mark.slow
@pytest.mark.integration
def test_a_leader_reports_its_followers(make_ensemble) -> None:  # noqa: F811
    ens: Ensemble = make_ensemble()
    leader = ens.wait_leader()
    c = KazooClient(leader.address)
    c.start(timeout=30)
    try:
        for i in range(20):
            c.create(f"/n{i}", b"x")
    finally:
        c.stop()
        c.close()
    deadline = time.monotonic() + 30
    while True:
        m = mntr(leader.host, leader.port)
        if m.get("zk_synced_followers") == "2" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (m["zk_learners"], m["zk_synced_followers"], m["zk_pending_syncs"]) == ("2", "2", "0")
    assert m["zk_followers"] == "2" and m["zk_quorum_size"] == "3"
    assert float(m["zk_avg_latency"]) > 0  # 20 writes, each waiting for a quorum, were timed
    follower = next(x for x in ens.members if x is not leader)
    assert not (LEADER_ONLY & mntr(follower.host, follower.port).keys())
    follower.kill()
    deadline = time.monotonic() + 30
    while mntr(leader.host, leader.port).get("zk_followers") != "1" and time.monotonic() < deadline:
        time.sleep(0.2)
    m = mntr(leader.host, leader.port)
    assert (m["zk_followers"], m["zk_synced_followers"]) == ("1", "1")
