"""Read-only mode, side by side with Apache ZooKeeper 3.8: two of three members down.

The same script runs against a 3-member squall ensemble started with
``--read-only`` and a 3-member ZooKeeper ensemble with
``-Dreadonlymode.enabled=true`` (and local sessions, as kazoo's own harness
runs it: without them ZooKeeper's read-only server answers kazoo's
handshake with a response kazoo cannot decode):

- the survivor says ``ro`` to ``isro`` and ``Mode: read-only`` to ``srvr``;
- a ``read_only=True`` kazoo client gets a CONNECTED_RO session on it and can
  read what was written before;
- create, setData, delete and sync answer NotReadOnly (-119);
- a client that does not allow read-only sessions gets none;
- when the two members are back, the read-only session is closed and the
  client carries on in a read-write session (its read-only session expires,
  as ZooKeeper's does), and writes work again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NotReadOnlyCallError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KeeperState

from tests.node.conftest import require_zookeeper
from tests.node.servers import (
    ServerProcess,
    four_letter_word,
    free_port,
    server_mode,
    squall_node,
    zookeeper_ensemble,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

DEADLINE_S = 60.0


def _squall(tmp_path: Path) -> list[ServerProcess]:
    ports = [(free_port(), free_port()) for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{c}:{p}" for i, (c, p) in enumerate(ports))
    return [
        squall_node(
            tmp_path / f"n{i + 1}" / "data",
            port=c,
            log_path=tmp_path / f"n{i + 1}.out",
            extra_args=["--id", str(i + 1), "--peers", peers, "--read-only", "--tick-ms", "1000"],
        )
        for i, (c, _) in enumerate(ports)
    ]


def _zookeeper(tmp_path: Path) -> list[ServerProcess]:
    require_zookeeper()
    return zookeeper_ensemble(
        tmp_path,
        tick_ms=1000,
        java_props=["-Dreadonlymode.enabled=true"],
        extra_config={"localSessionsEnabled": "true", "localSessionsUpgradingEnabled": "true"},
    )


def _until(what: str, check: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {deadline_s:.0f}s: {what}")
        time.sleep(0.1)


def _word(m: ServerProcess, word: str) -> str:
    try:
        return four_letter_word(m.host, m.port, word, timeout=1.0)
    except OSError:
        return ""


@pytest.mark.parametrize("kind", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_two_of_three_down_serves_read_only_sessions_then_read_write_again(kind: str, tmp_path: Path) -> None:
    members = _squall(tmp_path) if kind == "squall" else _zookeeper(tmp_path)
    clients: list[KazooClient] = []
    try:
        for m in members:
            m.start()
        _until(
            "one leader and two followers",
            lambda: sorted(server_mode(m) for m in members) == ["follower", "follower", "leader"],
        )
        writer = KazooClient(hosts=members[0].address)
        clients.append(writer)
        writer.start(timeout=30)
        writer.create("/ro", b"before")
        writer.sync("/ro")
        writer.stop()
        survivor = members[0]
        _until("the write on the survivor", lambda: "Zxid" in _word(survivor, "srvr"))
        time.sleep(1.0)  # the followers applied it long ago; the survivor must hold it
        members[1].kill()
        members[2].kill()

        ro = KazooClient(hosts=",".join(m.address for m in members), read_only=True, connection_retry=None)
        clients.append(ro)
        deadline = time.monotonic() + DEADLINE_S
        while True:  # until the survivor serves read-only sessions (ZooKeeper: max(2 s, tickTime) after)
            try:
                ro.start(timeout=10)
                break
            except (KazooTimeoutError, KazooException):
                ro.stop()
                if time.monotonic() > deadline:
                    raise
        assert ro.client_state == KeeperState.CONNECTED_RO
        assert _word(survivor, "isro") == "ro"
        assert "Mode: read-only" in _word(survivor, "srvr").splitlines()
        assert "ro" in ro.get_children("/") and ro.get("/ro")[0] == b"before"
        for name, write in [
            ("create", lambda: ro.create("/fred")),
            ("set", lambda: ro.set("/ro", b"x")),
            ("delete", lambda: ro.delete("/ro")),
            ("sync", lambda: ro.sync("/ro")),
        ]:
            with pytest.raises(NotReadOnlyCallError):
                write()
                pytest.fail(f"{name} succeeded on a read-only session")
        rw = KazooClient(hosts=survivor.address, connection_retry=None)
        clients.append(rw)
        with pytest.raises((KazooTimeoutError, KazooException)):
            rw.start(timeout=5)

        members[1].start()
        members[2].start()
        _until("the read-only client back in a read-write session", lambda: ro.client_state == KeeperState.CONNECTED)
        _until("isro rw", lambda: _word(survivor, "isro") == "rw")
        ro.retry(ro.create, "/after", b"1")
        assert ro.get("/after")[0] == b"1"
    finally:
        for zk in clients:
            try:
                zk.stop()
                zk.close()
            except Exception:  # noqa: BLE001 - teardown: the servers are killed next whatever happens
                pass
        for m in members:
            m.kill()
        for m in members:
            print(f"--- {m.kind} {m.address} log tail:\n{m.log_tail(15)}")
