"""Packet faults (the proxy mesh) and clock faults (libfaketime) on the local
backend: unit tests on sockets and probe processes, then real clusters of
both databases. Timing assertions are lower bounds only (a delay cannot make
a round trip faster than the delay, whatever the load); measured figures are
printed, not asserted."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends import clock as faketime
from harness.backends.base import SetupError
from harness.backends.docker import PACKET_CHAIN, packet_rules
from harness.backends.local import LocalBackend, fault_settings
from harness.backends.proxy import LOSS_RTO_MS, ProxyMesh, Shape
from tests.harness.test_local_backend import (
    EchoServer,
    _group_members,
    _listening_ports,
    _need_zookeeper,
    _SleeperDB,
    _wait_for,
)

REPO = Path(__file__).resolve().parents[2]


def _need_faketime() -> None:
    if not faketime.LIBFAKETIME.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{faketime.LIBFAKETIME} is missing, and CI=true requires it")
        pytest.skip(f"libfaketime is not installed ({faketime.LIBFAKETIME})")


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


def _rtt(sock: socket.socket, payload: bytes = b"x" * 64) -> float:
    t0 = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "connection closed during a round trip"
        got += chunk
    assert got == payload
    return time.monotonic() - t0


def _dial(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# ------------------------------------------------------------------ proxy
def test_delay_slows_one_direction_then_both_and_unshape_restores(mesh, echo):
    port = mesh.add("a", "b", "peer", echo.port)
    with _dial(port) as s:
        base = _rtt(s)
        mesh.shape("a", "b", delay_ms=150)
        one_way = _rtt(s)
        assert one_way >= 0.150, "bytes a sends to b are held for the delay"
        mesh.shape("b", "a", delay_ms=150)  # the replies, on the connection a dialled
        both = _rtt(s)
        assert both >= 0.300
        mesh.unshape()
        assert mesh.shapes() == {}
        after = _rtt(s)
    print(
        f"\nround trip through the proxy: {base * 1e3:.1f} ms unshaped, {one_way * 1e3:.1f} ms with "
        f"150 ms a->b, {both * 1e3:.1f} ms with 150 ms each way, {after * 1e3:.1f} ms after unshape"
    )


def test_base_latency_applies_to_every_link_both_ways_and_survives_unshape(mesh, echo):
    port = mesh.add("a", "b", "peer", echo.port)
    mesh.set_latency(100)
    with _dial(port) as s:
        assert _rtt(s) >= 0.200
        mesh.unshape()
        assert _rtt(s) >= 0.200 and mesh.latency_ms == 100
    with pytest.raises(ValueError, match=">= 0"):
        mesh.set_latency(-1)


def test_jitter_keeps_bytes_in_order(mesh, echo):
    port = mesh.add("a", "b", "peer", echo.port)
    mesh.shape("a", "b", delay_ms=20, jitter_ms=20)
    with _dial(port) as s:
        sent = b"".join(i.to_bytes(2, "big") for i in range(300))
        for i in range(0, len(sent), 20):  # many small chunks, each with its own jitter
            s.sendall(sent[i : i + 20])
            time.sleep(0.001)
        got = b""
        while len(got) < len(sent):
            got += s.recv(65536)
        assert got == sent


def test_loss_holds_chunks_for_a_retransmission_timeout(mesh, echo):
    port = mesh.add("a", "b", "peer", echo.port)
    mesh.shape("a", "b", loss=1.0)
    with _dial(port) as s:
        assert _rtt(s) >= LOSS_RTO_MS / 1000


def test_bandwidth_limit_serialises_the_link(mesh, echo):
    port = mesh.add("a", "b", "peer", echo.port)
    mesh.shape("a", "b", rate_kbps=512)  # 64 KB/s
    with _dial(port) as s:
        took = _rtt(s, b"y" * 32768)
    assert took >= 32768 * 8 / 512_000 * 0.9  # 0.5 s at 512 kbit/s (chunking may split the last bytes)
    print(f"\n32 KiB through a 512 kbit/s link: {took:.2f} s")


def test_shape_values_are_checked():
    with pytest.raises(ValueError, match="probability"):
        Shape(loss=1.5)
    with pytest.raises(ValueError, match="rate_kbps"):
        Shape(rate_kbps=0)
    with pytest.raises(ValueError, match="delay and jitter"):
        Shape(delay_ms=-1)


def test_a_dropped_link_stays_cut_while_shaped(mesh, echo):
    port = mesh.add("a", "b", "peer", echo.port)
    mesh.shape("a", "b", delay_ms=50)
    mesh.drop("a", "b")
    try:
        with _dial(port) as s:
            s.settimeout(5)
            s.sendall(b"hello")
            assert s.recv(10) == b"", "a dropped link must not carry bytes"
    except (ConnectionResetError, BrokenPipeError):
        pass  # reset: cut as well


# ------------------------------------------------------------------ docker
def test_docker_packet_rules_use_statistic_and_hashlimit_and_refuse_delay():
    (loss,) = packet_rules("10.0.0.2", "n1", loss=0.2)
    assert loss[:3] == ["iptables", "-A", PACKET_CHAIN] and "statistic" in loss and "0.2000" in loss
    (rate,) = packet_rules("10.0.0.2", "n1", rate_kbps=256)
    assert "hashlimit" in rate and "32000b/s" in rate
    with pytest.raises(ValueError, match="cannot delay packets"):
        packet_rules("10.0.0.2", "n1", delay_ms=100)


# ------------------------------------------------------------------ clocks
_PROBE = "import time, sys\nfor line in sys.stdin:\n    print(f'{time.time():.3f}', flush=True)\n"


def _offset_s(proc: subprocess.Popen) -> float:
    proc.stdin.write("\n")
    proc.stdin.flush()
    faked = float(proc.stdout.readline())
    return faked - time.time()


def test_a_probe_under_the_preload_follows_the_control_file_while_it_runs(tmp_path):
    _need_faketime()
    clocks = faketime.Clocks(tmp_path / "clock", ["n1"])
    env = {**os.environ, **clocks.env("n1")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROBE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert abs(_offset_s(proc)) < 5
        clocks.bump("n1", 3_600_000)
        assert clocks.path("n1").read_text().strip() == "+3600.000"
        _wait_for(lambda: _offset_s(proc) > 3500, 10, "the probe's clock to move forward by an hour")
        clocks.bump("n1", -60_000)
        _wait_for(lambda: -65 < _offset_s(proc) < -55, 10, "the probe's clock to move back a minute")
        # libfaketime re-reads the control file only once the whole seconds since its
        # last read exceed FAKETIME_CACHE_DURATION (1): reads come 1-2 s apart, often
        # exactly 2 s. A 1 s strobe (a 2 s cycle) can then be sampled at the same phase
        # every time and never seen to flip (it failed that way once). Each state held
        # 4 s outlasts the longest gap between reads, so both states are seen.
        clocks.strobe("n1", 600_000, 4000)
        seen = set()
        _wait_for(
            lambda: seen.add(round(_offset_s(proc) / 600)) or {0, 1} <= seen,
            20,
            "the strobe to flip the probe's clock between +0 and +10 min",
        )
        clocks.reset()
        _wait_for(lambda: abs(_offset_s(proc)) < 5, 10, "the probe's clock back to the real time")
        assert clocks.offset_ms("n1") == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        faketime.remove_shm(proc.pid)
        clocks.close()
    assert not faketime.leftover_shm([proc.pid])
    assert not (tmp_path / "clock").exists()
    with pytest.raises(ValueError, match="strobe period"):
        faketime.Clocks(tmp_path / "c2", ["n1"]).strobe("n1", 1000, 10)


def test_clock_preload_only_when_the_nemesis_has_clock(tmp_path):
    spec = SimpleNamespace(nodes=1, nemesis=("partition",), option_dict={})
    assert fault_settings(spec) == {"clock": False, "latency_ms": 0.0}
    cluster = LocalBackend().create(spec, _SleeperDB(), tmp_path)
    try:
        pid = cluster.pids()["n1"]
        assert "LD_PRELOAD=" + str(faketime.LIBFAKETIME) not in _environ(pid)
        with pytest.raises(SetupError, match="must include clock"):
            cluster.clock_bump("n1", 1000)
    finally:
        cluster.teardown()
    with pytest.raises(SetupError, match="--latency must be >= 0"):
        fault_settings(SimpleNamespace(nodes=1, nemesis=(), option_dict={"latency_ms": -5}))


def _environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")


def _maps_faketime(pid: int) -> bool:
    try:
        return "libfaketime" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_local_nodes_run_with_the_preload_and_teardown_leaves_nothing(tmp_path):
    _need_faketime()
    spec = SimpleNamespace(nodes=2, nemesis=("clock", "packet"), option_dict={"latency_ms": 10})
    cluster = LocalBackend().create(spec, _SleeperDB(), tmp_path)
    pids = []
    try:
        assert cluster.mesh.latency_ms == 10
        first = cluster.pids()["n1"]
        pids.append(first)
        _wait_for(lambda: len(_group_members(first)) >= 2, 10, "the node's children")
        for member in _group_members(first):
            assert _maps_faketime(member), "every process of the node has libfaketime loaded"
            assert f"FAKETIME_TIMESTAMP_FILE={cluster.clocks.path('n1')}" in _environ(member)
        _wait_for(lambda: faketime.leftover_shm([first]), 10, "libfaketime's shared memory")
        cluster.clock_bump("n1", 5000)
        cluster.shape("n1", "n2", delay_ms=100)
        cluster.kill("n1")  # SIGKILL: libfaketime cannot clean up; the cluster does
        assert not faketime.leftover_shm([first])
        cluster.start("n1")
        pids += [p for p in cluster.pids().values() if p]
        cluster.clock_strobe("n2", 1000, 1000)
    finally:
        cluster.teardown()
    assert not any(_group_members(p) for p in pids)
    assert not faketime.leftover_shm(pids)
    assert not (tmp_path / "clock").exists(), "the control files are removed"


def test_an_interrupted_harness_leaves_no_node_preload_or_proxy(tmp_path):
    """SIGTERM to a harness holding a clock-faulted, shaped cluster: nothing is left."""
    _need_faketime()
    script = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from types import SimpleNamespace
from harness.backends.local import LocalBackend
from tests.harness.test_local_backend import _SleeperDB
spec = SimpleNamespace(nodes=2, nemesis=("clock", "packet"), option_dict={{"latency_ms": 50}})
c = LocalBackend().create(spec, _SleeperDB(), Path({str(tmp_path)!r}))
c.clock_strobe("n1", 5000, 1000)
c.shape("n1", "n2", delay_ms=100, loss=0.1)
time.sleep(0.5)
print(" ".join(str(p) for p in c.pids().values()), flush=True)
print(" ".join(str(p) for p in c.mesh.ports()), flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        ports = {int(p) for p in proc.stdout.readline().split()}
        assert len(pids) == 2 and ports
        proc.terminate()
        proc.wait(timeout=30)
        _wait_for(lambda: not any(_group_members(p) for p in pids), 10, "the nodes to be gone")
        assert not faketime.leftover_shm(pids)
        assert not (tmp_path / "clock").exists()
        assert not ports & _listening_ports()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# ---------------------------------------------------------- real clusters
def _db(name: str):
    if name == "zookeeper":
        _need_zookeeper()
        from harness.dbs.zookeeper import ZooKeeperDB

        return ZooKeeperDB()
    from harness.dbs import squall

    return squall.make({})


def _stamped_offset_s(cluster) -> float:
    """mtime the leader stamps on a new znode minus the real time (a fresh session)."""
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=cluster.connect_string(), timeout=15)
    try:
        zk.start(timeout=15)
        path = zk.create_async("/clock-", b"", sequence=True).get(timeout=15)
        return zk.exists_async(path).get(timeout=15).mtime / 1000 - time.time()
    except Exception:  # noqa: BLE001 - the cluster may be re-electing: try again
        return float("nan")
    finally:
        zk.stop()
        zk.close()


def _timed_create(zk, path: str) -> float:
    t0 = time.monotonic()
    zk.create_async(path, b"v").get(timeout=60)
    return time.monotonic() - t0


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("db_name", ["squall", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_packet_and_clock_faults_on_a_real_three_node_cluster(tmp_path, db_name):
    """The links really slow down (a quorum write waits for them), the leader's
    clock really moves (the mtime it stamps), and after heal and teardown
    nothing is left: no shape, no offset, no process, no preload segment."""
    _need_faketime()
    from kazoo.client import KazooClient

    db = _db(db_name)
    spec = SimpleNamespace(nodes=3, nemesis=("packet", "clock"), option_dict={})
    cluster = LocalBackend().create(spec, db, tmp_path)
    ports = cluster.listening_ports()
    pids: list[int] = []
    zk = None
    try:
        cluster.wait_ready(120)
        pids += [p for p in cluster.pids().values() if p]
        # ready, but a status poll may still find no leader for a moment (a loaded machine): wait for one
        leader = _wait_for(cluster.leader, 60, "a leader")
        # every process of every node (the JVM under ZooKeeper's launcher too) has the preload
        for p in pids:
            assert all(_maps_faketime(m) for m in _group_members(p))
        zk = KazooClient(hosts=cluster.client_address(leader), timeout=30)
        zk.start(timeout=30)
        base = min(_timed_create(zk, f"/base{i}") for i in range(3))

        # -- packet: 100 ms on every link; a quorum write needs leader -> follower -> leader
        # (below the node's 250 ms election timeout, so the leadership stays put)
        for src in cluster.nodes:
            for dst in cluster.nodes:
                if src != dst:
                    cluster.shape(src, dst, delay_ms=100)
        slowed = _timed_create(zk, "/slowed")
        assert slowed >= 0.1, f"a quorum write took {slowed:.3f}s with 100 ms on every peer link"
        cluster.unshape()
        assert cluster.mesh.shapes() == {}
        _timed_create(zk, "/healed-links")
        print(f"\n{db_name}: create {base * 1e3:.1f} ms unshaped, {slowed * 1e3:.1f} ms with 100 ms links")

        # -- clock: the leader stamps mtime from its wall clock. The slow links
        # may have moved the leadership, so every node's clock goes back.
        cluster.wait_ready(120)
        for node in cluster.nodes:
            cluster.clock_bump(node, -3_600_000)
        # A fresh session per probe: a wall-clock step may expire sessions on
        # the node, whose session expiry follows the leader's wall clock
        # (ZooKeeper's follows the monotonic clock); see docs/consistency.md.
        _wait_for(lambda: _stamped_offset_s(cluster) < -3000, 30, "the leader's mtime stamps to be an hour behind")
        cluster.clock_reset()
        _wait_for(
            lambda: abs(_stamped_offset_s(cluster)) < 60, 30, "the leader's mtime stamps to be the real time again"
        )
        try:
            zk.exists_async("/slowed").get(timeout=30)
            kept = "kept"
        except Exception as exc:  # noqa: BLE001
            kept = f"lost ({type(exc).__name__})"
        print(f"{db_name}: the long-lived session across a one-hour wall-clock step back and forth: {kept}")
        if db_name == "zookeeper":  # its session expiry runs on the monotonic clock
            assert kept == "kept"
    finally:
        if zk is not None:
            zk.stop()
            zk.close()
        cluster.teardown()
    assert not any(_group_members(p) for p in pids)
    assert not faketime.leftover_shm(pids), "libfaketime segments of killed nodes are removed"
    assert not (tmp_path / "clock").exists()
    assert not set(ports) & _listening_ports()


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_docker_packet_faults_are_iptables_rules_that_unshape_removes(tmp_path):
    """Loss and bandwidth rules land in the receiver's SQUALL-PKT chain (the
    engine accepts them), survive a partition's heal, slow a write, and
    unshape and teardown remove them; a delay is refused with the reason."""
    from kazoo.client import KazooClient

    from harness.backends import docker as dk
    from harness.backends import images
    from harness.dbs import squall

    try:
        client = images.docker_client()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    cluster = dk.DockerBackend().create(SimpleNamespace(nodes=3), squall.make({}), tmp_path)
    zk = None
    try:
        cluster.wait_ready(180)
        a, b = cluster.nodes[0], cluster.nodes[1]
        box = client.containers.get(f"squall-{cluster.run_id}-{b}")

        def rules() -> str:
            return box.exec_run(["iptables", "-S", PACKET_CHAIN]).output.decode()

        cluster.shape(a, b, loss=0.3)
        cluster.shape(a, b, rate_kbps=256)
        text = rules()
        import re

        m = re.search(r"-s (\S+)/32 -m statistic --mode random --probability ([0-9.]+) -j DROP", text)
        assert m and m.group(1) == cluster.ip(a) and abs(float(m.group(2)) - 0.3) < 1e-6, text
        assert "hashlimit" in text and "-j DROP" in text, text
        cluster.heal()  # a partition's heal leaves packet faults alone
        assert "statistic" in rules()
        with pytest.raises(ValueError, match="cannot delay packets"):
            cluster.shape(a, b, delay_ms=100)
        zk = KazooClient(hosts=cluster.connect_string(), timeout=30)
        zk.start(timeout=60)
        for src in cluster.nodes:
            for dst in cluster.nodes:
                if src != dst:
                    cluster.shape(src, dst, loss=0.2)
        t0 = time.monotonic()
        for i in range(5):
            zk.create_async(f"/lossy{i}", b"v").get(timeout=120)
        lossy = (time.monotonic() - t0) / 5
        cluster.unshape()
        assert "DROP" not in rules()
        t0 = time.monotonic()
        for i in range(5):
            zk.create_async(f"/clean{i}", b"v").get(timeout=60)
        clean = (time.monotonic() - t0) / 5
        print(f"\ndocker squall: create {clean * 1e3:.1f} ms clean, {lossy * 1e3:.1f} ms with 20% loss on every link")
    finally:
        if zk is not None:
            zk.stop()
            zk.close()
        cluster.teardown()
    assert dk.leftovers(client, cluster.run_id) == {"containers": [], "networks": []}
