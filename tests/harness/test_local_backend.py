"""The proxy mesh (plain sockets) and the local backend (Apache ZooKeeper)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.backends.base import Backend, Cluster, SetupError
from harness.backends.local import LocalBackend, node_names
from harness.backends.proxy import ProxyMesh, free_ports
from harness.dbs.base import DBBase, NodeLaunch, NodeStatus

ZK_JAR = Path("/usr/share/java/zookeeper.jar")


def _need_zookeeper() -> None:
    if not ZK_JAR.exists() or subprocess.run(["which", "java"], capture_output=True).returncode:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{ZK_JAR} or java is missing, and CI=true requires them")
        pytest.skip(f"Debian's zookeeper package is not installed ({ZK_JAR} missing)")


# ------------------------------------------------------------------ proxy
class EchoServer:
    """A threaded echo server on 127.0.0.1 (stopped by close())."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c: socket.socket) -> None:
        try:
            while data := c.recv(4096):
                c.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def echo():
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mesh():
    m = ProxyMesh()
    try:
        yield m
    finally:
        m.close()


def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(payload)
        return s.recv(4096)


def _is_cut(sock: socket.socket) -> bool:
    """The connection was closed/reset by the proxy (EOF or an error)."""
    sock.settimeout(5)
    try:
        sock.sendall(b"x")
        return sock.recv(10) == b""
    except OSError:
        return True


def _dial_is_cut(port: int) -> bool:
    """A new connection through the proxy is refused/reset (at connect or
    at the first exchange)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return True
    with s:
        return _is_cut(s)


def test_proxy_forwards_then_drop_cuts_existing_and_refuses_new_then_heal(mesh, echo):
    port = mesh.add("a", "b", "peer", echo.port)
    assert _roundtrip(port) == b"ping"
    live = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        live.sendall(b"hi")
        assert live.recv(10) == b"hi"
        mesh.drop("a", "b")
        assert _is_cut(live), "an open connection must be cut by drop"
    finally:
        live.close()
    assert _dial_is_cut(port), "a new connection on a dropped link must be refused"
    assert mesh.dropped() == {("a", "b")}
    mesh.heal()
    assert _roundtrip(port, b"again") == b"again"


def test_drop_is_per_link(mesh, echo):
    ab = mesh.add("a", "b", "peer", echo.port)
    cb = mesh.add("c", "b", "peer", echo.port)
    mesh.drop("a", "b")
    assert _dial_is_cut(ab)
    assert _roundtrip(cb) == b"ping"


def test_proxy_to_a_dead_target_resets_the_dialler(mesh):
    dead = free_ports(1)[0]
    port = mesh.add("a", "b", "peer", dead)
    assert _dial_is_cut(port)


def test_mesh_close_releases_every_listener():
    m = ProxyMesh()
    ports = [m.add("a", "b", "peer", 1), m.add("b", "a", "peer", 1)]
    with pytest.raises(ValueError, match="exists already"):
        m.add("a", "b", "peer", 1)
    m.close()
    m.close()  # idempotent
    for p in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p), timeout=2).close()


def test_free_ports_are_distinct():
    ports = free_ports(20)
    assert len(set(ports)) == 20


def test_node_names():
    assert node_names(3) == ["n1", "n2", "n3"]
    assert node_names(["a", "b"]) == ["a", "b"]
    with pytest.raises(SetupError, match="at least 1"):
        node_names(0)
    with pytest.raises(SetupError, match="distinct"):
        node_names(["a", "a"])


class _SleeperDB(DBBase):
    """A fake db whose node is `sleep`: exercises process control without a JVM."""

    name = "sleeper"
    peer_kinds = ("peer",)

    def prepare(self, node):
        return NodeLaunch(["sh", "-c", "sleep 60 & sleep 60; wait"], log=f"{node.name}.log")

    def status(self, address, timeout_s=1.0):
        return NodeStatus.down("a sleeper never serves")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as dead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_process_control_with_a_fake_db(tmp_path):
    cluster = LocalBackend().create(2, _SleeperDB(), tmp_path)
    try:
        assert isinstance(cluster, Cluster) and isinstance(LocalBackend(), Backend)
        pids = cluster.pids()
        assert all(pids.values())
        pid = pids["n1"]
        time.sleep(0.2)  # let the shell fork its children
        members = _group_members(pid)
        assert len(members) >= 2, "the node's children share its process group"
        # signals are delivered asynchronously: wait for the state to show
        cluster.pause("n1")
        _wait_for(
            lambda: all(_state(m) == "T" for m in _group_members(pid)), 10, "every process of n1's group to be stopped"
        )
        cluster.resume("n1")
        _wait_for(
            lambda: all(_state(m) != "T" for m in _group_members(pid)), 10, "every process of n1's group to run again"
        )
        cluster.kill("n1")
        assert not _group_members(pid) and cluster.pids()["n1"] is None
        cluster.start("n1")
        assert cluster.pids()["n1"] not in (None, pid)
        with pytest.raises(SetupError, match="did not answer"):
            cluster.wait_ready(0.5)
        assert "starting n1" in cluster.log_path("n1").read_text()
    finally:
        cluster.teardown()
    assert all(not _group_members(p) for p in pids.values())
    assert all(p is None for p in cluster.pids().values())
    cluster.teardown()  # idempotent


def test_failed_launch_tears_down_what_started(tmp_path):
    class Broken(_SleeperDB):
        def prepare(self, node):
            if node.index == 2:
                raise SetupError("node 2 cannot be configured")
            return super().prepare(node)

    with pytest.raises(SetupError, match="cannot be configured"):
        LocalBackend().create(3, Broken(), tmp_path)


def test_cleanup_on_sigterm_of_the_harness_process(tmp_path):
    """A harness process killed by SIGTERM leaves no node behind."""
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pathlib import Path
from harness.backends.local import LocalBackend
from tests.harness.test_local_backend import _SleeperDB
c = LocalBackend().create(2, _SleeperDB(), Path({str(tmp_path)!r}))
print(" ".join(str(p) for p in c.pids().values()), flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.terminate()
        proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_group_members(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# ---------------------------------------------------------- ZooKeeper, real
def _listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _wait_for(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.zookeeper
def test_zookeeper_three_nodes_faults_and_clean_teardown(tmp_path):
    _need_zookeeper()
    from harness.dbs.zookeeper import ZooKeeperDB

    cluster = LocalBackend().create(3, ZooKeeperDB(), tmp_path)
    ports = cluster.listening_ports()
    pids = [p for p in cluster.pids().values() if p]
    try:
        cluster.wait_ready(90)
        leader = cluster.leader()
        assert leader in cluster.nodes
        modes = sorted(cluster.node_status(n).role for n in cluster.nodes)
        assert modes == ["follower", "follower", "leader"]

        # kill the leader: another is elected; restart it: it rejoins
        cluster.kill(leader)
        _wait_for(lambda: cluster.leader() not in (None, leader), 60, "a new leader after killing the old one")
        cluster.start(leader)
        cluster.wait_ready(90)

        # pause a follower: it stops answering; resume: it answers again
        follower = next(n for n in cluster.nodes if n != cluster.leader())
        cluster.pause(follower)
        assert cluster.node_status(follower).role == "down"
        cluster.resume(follower)
        cluster.wait_ready(90)

        # partition the leader away: the majority elects another; heal
        leader = cluster.leader()
        for other in cluster.nodes:
            if other != leader:
                cluster.drop(leader, other)
                cluster.drop(other, leader)
        _wait_for(
            lambda: any(cluster.node_status(n).role == "leader" for n in cluster.nodes if n != leader),
            60,
            "a leader in the majority side",
        )
        # the old leader, cut from its quorum, stops serving
        _wait_for(lambda: cluster.node_status(leader).role != "leader", 60, "the isolated leader to step down")
        cluster.heal()
        cluster.wait_ready(90)
        logs = cluster.collect_logs(tmp_path / "logs")
        assert sorted(p.name for p in logs) == ["n1.log", "n2.log", "n3.log"]
    finally:
        cluster.teardown()
    assert not any(_group_members(p) for p in pids)
    leaked = set(ports) & _listening_ports()
    assert not leaked, f"ports still listening after teardown: {sorted(leaked)}"
