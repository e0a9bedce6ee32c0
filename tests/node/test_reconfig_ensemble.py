"""/zookeeper/config and dynamic reconfiguration on real processes, side by side with ZooKeeper 3.8.

- The config node of a fresh 3-member ensemble, of a standalone server, and
  after adding and removing an observer, in the same form on both servers:
  ``server.N=host:port:port:participant;host:port`` lines and ``version=<hex>``,
  Stat version -1, ACL world:anyone READ (a standalone server's is empty).
- squall only: a fourth server started with ``--join`` is added as a
  participant (it first catches up as an observer), holds the data and
  counts as a voter; a removed member stops its process.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import ACL, Id

from tests.node.conftest import require_zookeeper
from tests.node.servers import (
    ZOOKEEPER_SUPER_DIGEST,
    ServerProcess,
    free_port,
    server_mode,
    squall_node,
    zookeeper_ensemble,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

DEADLINE_S = 60.0
LINE = re.compile(r"server\.(\d+)=127\.0\.0\.1:(\d+):(\d+):(participant|observer);127\.0\.0\.1:(\d+)")


def _squall(tmp_path: Path, n: int = 3) -> tuple[list[ServerProcess], list[tuple[int, int]]]:
    ports = [(free_port(), free_port()) for _ in range(n)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{c}:{p}:{free_port()}" for i, (c, p) in enumerate(ports))
    return [
        squall_node(
            tmp_path / f"n{i + 1}" / "data",
            port=c,
            log_path=tmp_path / f"n{i + 1}.out",
            extra_args=[
                "--id",
                str(i + 1),
                "--peers",
                peers,
                "--reconfig-enabled",
                "--super-digest",
                ZOOKEEPER_SUPER_DIGEST,
                "--tick-ms",
                "1000",
            ],
        )
        for i, (c, _) in enumerate(ports)
    ], ports


def _until(what: str, check: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {deadline_s:.0f}s: {what}")
        time.sleep(0.1)


def _ready(members: list[ServerProcess]) -> None:
    for m in members:
        m.start()
    _until(
        "one leader, the others following",
        lambda: sorted(server_mode(m) for m in members) == ["follower"] * (len(members) - 1) + ["leader"],
    )


def _config_shape(data: bytes) -> tuple[list[tuple[int, str]], int]:
    """([(id, role)] in order, version) of a config text; asserts every line has ZooKeeper's form."""
    lines = data.decode().split("\n")
    members = []
    for line in lines[:-1]:
        m = LINE.fullmatch(line)
        assert m, f"not ZooKeeper's server line: {line!r} in {data!r}"
        members.append((int(m.group(1)), m.group(4)))
    assert lines[-1].startswith("version="), data
    return members, int(lines[-1][len("version=") :], 16)


@pytest.mark.parametrize("kind", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_config_node_of_an_ensemble_and_its_changes_look_as_zookeepers(kind: str, tmp_path: Path) -> None:
    if kind == "squall":
        members, _ = _squall(tmp_path)
    else:
        require_zookeeper()
        members = zookeeper_ensemble(tmp_path, tick_ms=1000, extra_config={"reconfigEnabled": "true"})
    clients: list[KazooClient] = []
    try:
        _ready(members)
        zk = KazooClient(hosts=members[0].address)
        clients.append(zk)
        zk.start(timeout=30)
        _until("the configuration written", lambda: bool(zk.get("/zookeeper/config")[0]))
        data, stat = zk.get("/zookeeper/config")
        shape, version = _config_shape(data)
        assert shape == [(1, "participant"), (2, "participant"), (3, "participant")]
        assert version >> 32 >= 1 and stat.mzxid == version
        assert (stat.version, stat.aversion) == (-1, -1)
        assert zk.get_acls("/zookeeper/config")[0] == [ACL(1, Id("world", "anyone"))]
        su = KazooClient(hosts=members[1].address, auth_data=[("digest", "super:test")])
        clients.append(su)
        su.start(timeout=30)
        joining = f"server.100=127.0.0.1:{free_port()}:{free_port()}:observer;127.0.0.1:{free_port()}"
        added, added_stat = su.reconfig(joining=joining, leaving=None, new_members=None)
        shape2, version2 = _config_shape(added)
        assert shape2 == shape + [(100, "observer")] and version2 > version and added_stat.version == -1
        removed, _ = su.reconfig(joining=None, leaving="100", new_members=None, from_config=version2)
        shape3, version3 = _config_shape(removed)
        assert shape3 == shape and version3 > version2
        _until(
            "every member shows it", lambda: all(KazooClient.get(c, "/zookeeper/config")[0] == removed for c in clients)
        )
    finally:
        for c in clients:
            c.stop()
            c.close()
        for m in members:
            m.kill()


@pytest.mark.parametrize("kind", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_a_standalone_servers_config_node_is_empty(kind: str, request: pytest.FixtureRequest) -> None:
    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    zk = KazooClient(hosts=server.address)
    zk.start(timeout=30)
    try:
        data, stat = zk.get("/zookeeper/config")
        assert data == b"" and (stat.version, stat.aversion, stat.mzxid) == (0, -1, 0)
    finally:
        zk.stop()
        zk.close()


def test_a_joined_server_becomes_a_voter_and_a_removed_one_stops(tmp_path: Path) -> None:
    members, ports = _squall(tmp_path)
    clients: list[KazooClient] = []
    joiner: ServerProcess | None = None
    try:
        _ready(members)
        su = KazooClient(hosts=",".join(m.address for m in members), auth_data=[("digest", "super:test")])
        clients.append(su)
        su.start(timeout=30)
        for k in range(50):
            su.create(f"/before{k}", b"x" * 100)
        # server 4: listed with the current members, started with --join on a fresh data dir
        c4, p4, e4 = free_port(), free_port(), free_port()
        peers = ",".join(f"{i + 1}=127.0.0.1:{c}:{p}" for i, (c, p) in enumerate(ports)) + f",4=127.0.0.1:{c4}:{p4}"
        joiner = squall_node(
            tmp_path / "n4" / "data",
            port=c4,
            log_path=tmp_path / "n4.out",
            extra_args=[
                "--id",
                "4",
                "--peers",
                peers,
                "--join",
                "--reconfig-enabled",
                "--super-digest",
                ZOOKEEPER_SUPER_DIGEST,
                "--tick-ms",
                "1000",
            ],
        )
        joiner.start()
        data, _ = su.reconfig(
            joining=f"server.4=127.0.0.1:{p4}:{e4}:participant;127.0.0.1:{c4}", leaving=None, new_members=None
        )
        assert f"server.4=127.0.0.1:{p4}:{e4}:participant;127.0.0.1:{c4}".encode() in data
        _until("server 4 follows", lambda: server_mode(joiner) == "follower")
        direct = KazooClient(hosts=joiner.address)
        clients.append(direct)
        direct.start(timeout=30)
        direct.sync("/")
        assert direct.get("/before49")[0] == b"x" * 100
        assert direct.get("/zookeeper/config")[0] == data
        # four voters: with two of the first three down, no quorum; with one down, writes go on
        members[0].kill()
        su.retry(su.create, "/with-three-of-four", b"")
        # remove server 2: it applies its removal and stops
        su.retry(su.reconfig, joining=None, leaving="2", new_members=None)
        _until("server 2's process exits", lambda: not members[1].running)
        assert "removed from the ensemble" in members[1].log_text()
        su.retry(su.create, "/after-removal", b"")
    finally:
        for c in clients:
            try:
                c.stop()
                c.close()
            except Exception:  # noqa: BLE001 - teardown: the servers are killed next whatever happens
                pass
        for m in members + ([joiner] if joiner is not None else []):
            m.kill()
        for m in members + ([joiner] if joiner is not None else []):
            print(f"--- {m.address} log tail:\n{m.log_tail(15)}")
