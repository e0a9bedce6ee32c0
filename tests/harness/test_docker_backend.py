"""The Docker backend.

Pure parts (the database's container view, scripts, mirror parsing) run everywhere.
The rest needs a Docker engine (``.ci/docker-setup.sh`` starts one): skipped
with a message when none answers, failed when CI=true. Every test removes
the containers and networks it made, by label, even when it fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import docker as dk
from harness.backends import images

ROOT = Path(__file__).resolve().parents[2]
ZK_JAR = Path("/usr/share/java/zookeeper.jar")


# ------------------------------------------------------------------ pure


def test_debian_mirror_from_deb822_and_one_line_sources():
    deb822 = (
        "Types: deb\n# http://snapshot.example/archive\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
    )
    assert images.debian_mirror(deb822) == "http://mirror.example/debian"
    one = "deb [arch=amd64] http://m.example/debian bookworm main\n"
    assert images.debian_mirror(one) == "http://m.example/debian"
    assert images.debian_mirror("deb https://other.example/apt cloud main\n") is None


def test_the_os_image_carries_what_the_registered_databases_need():
    from harness.dbs.zookeeper import ZooKeeperDB

    packages = images.os_packages()
    assert set(ZooKeeperDB().host_needs().debian_packages) <= set(packages)
    assert packages[:6] == images.BASE_PACKAGES and packages[-1] == "openssh-server"
    # squall's own databases leave the image (and its cached tag) as it always was
    assert packages[6:8] == ("zookeeper", "default-jre-headless")


def test_content_hash_changes_with_content_and_is_stable():
    assert images.content_hash(["a", "b"]) == images.content_hash(["a", "b"])
    assert images.content_hash(["a", "b"]) != images.content_hash(["ab"])  # lengths are part of it
    assert images.os_image_hash() == images.os_image_hash()


def test_the_database_is_told_it_runs_in_a_container(tmp_path, monkeypatch):
    """No adaptation after the fact: ``prepare`` gets the container's view
    (listen everywhere, its host name, the image's interpreter)."""
    from harness.dbs import squall as squall_db
    from harness.dbs.base import DBBase, NodeLaunch

    seen = []

    class Recorder(DBBase):
        name = "recorder"

        def prepare(self, node):
            seen.append(node)
            return NodeLaunch(["true"], files={"conf/x.cfg": "k=v\n"})

    class _Box:
        name = "squall-test-n1"

    cluster = dk.DockerCluster(Recorder(), ["n1", "n2"], tmp_path, "img", client=None)
    try:
        n = dk._Node("n1", 1, tmp_path / "nodes" / "n1", container=_Box())
        n.dir.mkdir(parents=True)
        cluster._prepare(n)
    finally:
        cluster._torn_down = True
    ctx = seen[0]
    assert (ctx.listen_host, ctx.host, ctx.python, ctx.local) == ("0.0.0.0", "n1", dk.VENV_PYTHON, False)
    assert ctx.ports.peer_addresses == {"n2": ("n2", dk.PEER_PORT, dk.ELECTION_PORT)}
    assert (n.dir / "conf" / "x.cfg").read_text() == "k=v\n" and n.argv == ["true"]
    assert squall_db  # the real databases' container launches: tests/harness/test_dbs.py


def test_container_ports_name_peers_by_host():
    p = dk.container_ports(["n1", "n2", "n3"], "n2")
    assert p.client == dk.CLIENT_PORT and p.peer == dk.PEER_PORT
    assert p.peer_addresses == {"n1": ("n1", 2888, 3888), "n3": ("n3", 2888, 3888)}


def test_scripts_quote_and_signal_the_group():
    s = dk.start_script("/d ir", ["java", "-cp", "a b"], {"K": "v w"}, "/d ir/n1.log", "/d ir/pid")
    assert "setsid java -cp 'a b'" in s and "K='v w'" in s and "echo $! > '/d ir/pid'" in s
    k = dk.signal_script("/p", "KILL")
    assert "kill -KILL -- -$p" in k and "kill -0" in k
    assert "kill -0" not in dk.signal_script("/p", "STOP")


def test_drop_rule_with_and_without_probability():
    assert dk.drop_rule("10.0.0.2") == ["iptables", "-A", dk.CHAIN, "-s", "10.0.0.2", "-j", "DROP"]
    lossy = dk.drop_rule("10.0.0.2", 0.25)
    assert "statistic" in lossy and "0.2500" in lossy
    with pytest.raises(ValueError, match="probability"):
        dk.drop_rule("10.0.0.2", 1.5)


# ----------------------------------------------------------- integration


def _need_docker():
    try:
        return images.docker_client()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")


def _need_zookeeper() -> None:
    if not ZK_JAR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{ZK_JAR} is missing: CI must install Debian's zookeeper package")
        pytest.skip(f"{ZK_JAR} is missing (install Debian's zookeeper package)")


@pytest.fixture
def docker_client():
    client = _need_docker()
    before = {c.id for c in client.containers.list(all=True, filters={"label": dk.LABEL_RUN})}
    try:
        yield client
    finally:
        # remove what this test made (runs it started), not other people's
        for c in client.containers.list(all=True, filters={"label": dk.LABEL_RUN}):
            if c.id not in before:
                dk.remove_run(client, c.labels.get(dk.LABEL_RUN))


def squall(args: list[str], cwd: Path, timeout_s: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        ["timeout", str(int(timeout_s)), sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
    )


def _latest(cwd: Path) -> Path:
    return (cwd / "results" / "latest").resolve()


def _run_ids(client) -> set[str]:
    return {c.labels.get(dk.LABEL_RUN) for c in client.containers.list(all=True, filters={"label": dk.LABEL_RUN})}


pytestmark_int = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]


def _integration(fn):
    for m in pytestmark_int:
        fn = m(fn)
    return fn


@_integration
@pytest.mark.zookeeper
def test_cluster_faults_by_hand(docker_client, tmp_path):
    """Partition, pause, kill+restart on a 3-node ZooKeeper in containers."""
    _need_zookeeper()
    from harness.dbs.zookeeper import ZooKeeperDB

    backend = dk.DockerBackend()
    cluster = backend.create(3, ZooKeeperDB(), tmp_path)
    try:
        cluster.wait_ready(120)
        assert len(cluster.connect_string().split(",")) == 3
        leader = cluster.leader()
        assert leader in cluster.nodes
        # isolate the leader: the other two elect a new one
        others = [n for n in cluster.nodes if n != leader]
        for o in others:
            cluster.drop(leader, o)
            cluster.drop(o, leader)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            modes = {n: cluster.node_status(n).role for n in others}
            if "leader" in modes.values():
                break
            time.sleep(0.5)
        assert "leader" in modes.values(), f"no new leader among {others} after isolating {leader}: {modes}"
        cluster.heal()
        cluster.wait_ready(90)
        # packet loss: a statistic rule in the receiver's chain, gone on heal
        a, b = cluster.nodes[0], cluster.nodes[1]
        cluster.lossy(a, b, 0.3)
        box = docker_client.containers.get(f"squall-{cluster.run_id}-{b}")
        rules = box.exec_run(["iptables", "-S", dk.CHAIN]).output.decode()
        m = re.search(r"-s (\S+)/32 -m statistic --mode random --probability ([0-9.]+) -j DROP", rules)
        assert m and m.group(1) == cluster.ip(a) and abs(float(m.group(2)) - 0.3) < 1e-6, rules
        cluster.heal()
        assert "DROP" not in box.exec_run(["iptables", "-S", dk.CHAIN]).output.decode()
        # pause: the container freezes and does not answer
        victim = cluster.nodes[0]
        cluster.pause(victim)
        assert docker_client.containers.get(f"squall-{cluster.run_id}-{victim}").status == "paused"
        cluster.heal()  # deferred for the paused node
        cluster.resume(victim)
        # kill: the process dies, the container and its data stay; start restarts it
        cluster.kill(victim)
        assert not cluster.is_running(victim)
        assert docker_client.containers.get(f"squall-{cluster.run_id}-{victim}").status == "running"
        cluster.start(victim)
        cluster.wait_ready(90)
        assert (tmp_path / "nodes" / victim / "data" / "version-2").is_dir()
        logs = cluster.collect_logs(tmp_path / "logs")
        assert len(logs) == 3 and all(p.stat().st_size > 0 for p in logs)
    finally:
        cluster.teardown()
    assert dk.leftovers(docker_client, cluster.run_id) == {"containers": [], "networks": []}


@_integration
@pytest.mark.zookeeper
def test_run_zookeeper_in_docker_is_valid(docker_client, tmp_path):
    _need_zookeeper()
    before = _run_ids(docker_client)
    r = squall(
        [
            "run",
            "--backend",
            "docker",
            "--db",
            "zookeeper",
            "--nodes",
            "3",
            "--workload",
            "register",
            "--nemesis",
            "partition,pause,kill",
            "--nemesis-interval",
            "3",
            "--time-limit",
            "30",
            "--seed",
            "7",
            "--no-progress",
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
    assert results["valid"] is True
    assert sorted(p.name for p in (run_dir / "logs").glob("*.log")) == ["n1.log", "n2.log", "n3.log"]
    # which faults come up is the seeded package's choice; each must have
    # been carried out (an info completion naming what it did)
    nemesis_ops = [
        json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if '"nemesis"' in line
    ]
    done = [op for op in nemesis_ops if op["type"] == "info"]
    kinds = {op["f"].replace("start-", "").replace("stop-", "") for op in done} & {"partition", "pause", "kill"}
    assert len(kinds) >= 2, f"expected at least two kinds of fault, got {kinds}: {done}"
    assert all(op["type"] in ("invoke", "info") for op in nemesis_ops)
    assert _run_ids(docker_client) - before == set(), "the run left containers behind"


@_integration
def test_run_squall_in_docker_is_valid(docker_client, tmp_path):
    # as many nodes as the squall db supports (1 until the node's ensemble exists)
    from harness.dbs import squall as squall_db

    nodes = "3" if squall_db.supports_ensemble(squall_db.node_help()) else "1"
    r = squall(
        [
            "run",
            "--backend",
            "docker",
            "--db",
            "squall",
            "--nodes",
            nodes,
            "--workload",
            "register",
            "--nemesis",
            "partition,pause,kill",
            "--nemesis-interval",
            "5",
            "--time-limit",
            "30",
            "--seed",
            "7",
            "--no-progress",
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
    assert results["valid"] is True
    assert (run_dir / "logs" / "n1.log").stat().st_size > 0


@_integration
def test_broken_database_fails_the_gate_in_docker(docker_client, tmp_path):
    r = squall(
        [
            "run",
            "--backend",
            "docker",
            "--db",
            "squall",
            "--nodes",
            "1",
            "--workload",
            "register",
            "--nemesis",
            "none",
            "--unsafe-db-fault",
            "lose-writes",
            "--time-limit",
            "12",
            "--seed",
            "11",
            "--no-progress",
        ],
        tmp_path,
    )
    run_dir = _latest(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 1, f"the broken database passed the gate (exit {r.returncode}): {results.get('summary')}"
    assert results["valid"] is False


def _start_run_mid_campaign(client, cwd: Path, before: set) -> subprocess.Popen:
    """Start `squall run --backend docker` (ZooKeeper, 3 nodes) and return
    once its cluster serves and clients have run for a few seconds."""
    from harness.cli import _registry
    from harness.cluster_cmd import cluster_status

    images.ensure_node_image(client)  # so the run reaches its campaign quickly
    e = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--backend",
            "docker",
            "--db",
            "zookeeper",
            "--nodes",
            "3",
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "2",
            "--time-limit",
            "60",
            "--no-progress",
        ],
        cwd=cwd,
        env=e,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        rows = [r for r in cluster_status(client, _registry()) if r["run"] not in before]
        # the run waits for this before its clients and nemesis start
        if len(rows) == 3 and all(r["mode"] in ("leader", "follower") for r in rows):
            time.sleep(6)
            return proc
        time.sleep(0.5)
    err = proc.stderr.read()[-2000:] if proc.poll() is not None else b"(still running)"
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError(f"the run never got its cluster serving: {err!r}")


@_integration
@pytest.mark.zookeeper
def test_cluster_down_after_a_sigkilled_run(docker_client, tmp_path):
    """SIGKILL leaves containers behind (no handler can run); `cluster down`
    must then remove every container and network of that run."""
    _need_zookeeper()
    before = _run_ids(docker_client)
    proc = _start_run_mid_campaign(docker_client, tmp_path, before)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        left = _run_ids(docker_client) - before
        assert left, "a SIGKILLed run should have left its containers (nothing to test otherwise)"
        r = squall(["cluster", "down", "--all"], tmp_path, timeout_s=120)
        assert r.returncode == 0, r.stderr
        for rid in left:
            assert dk.leftovers(docker_client, rid) == {"containers": [], "networks": []}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@_integration
@pytest.mark.zookeeper
def test_sigterm_to_a_run_removes_its_containers(docker_client, tmp_path):
    """SIGTERM (and SIGINT) unwind the run: it tears the cluster down itself."""
    _need_zookeeper()
    before = _run_ids(docker_client)
    proc = _start_run_mid_campaign(docker_client, tmp_path, before)
    try:
        mine = _run_ids(docker_client) - before
        assert mine
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        assert rc == 130, f"exit {rc}: {proc.stderr.read()[-2000:]!r}"
        for rid in mine:
            assert dk.leftovers(docker_client, rid) == {"containers": [], "networks": []}
        run_dir = _latest(tmp_path)
        assert sorted(p.name for p in (run_dir / "logs").glob("*.log")) == ["n1.log", "n2.log", "n3.log"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@_integration
@pytest.mark.zookeeper
def test_cluster_up_status_down(docker_client, tmp_path):
    _need_zookeeper()
    r = squall(["cluster", "up", "--db", "zookeeper", "--nodes", "3"], tmp_path, timeout_s=300)
    assert r.returncode == 0, r.stderr[-2000:]
    run_id = next(line.split()[-1] for line in r.stdout.splitlines() if line.startswith("run id:"))
    connect = next(line.split()[-1] for line in r.stdout.splitlines() if line.startswith("connect:"))
    assert len(connect.split(",")) == 3
    files = Path(next(line.split()[-1] for line in r.stdout.splitlines() if line.startswith("files:")))
    assert files.name == run_id and (files / "nodes" / "n1" / "zoo.cfg").exists()
    s = squall(["cluster", "status"], tmp_path, timeout_s=120)
    assert s.returncode == 0 and run_id in s.stdout
    block = [ln for ln in s.stdout.split(f"run {run_id}", 1)[1].splitlines()[1:4]]
    modes = [ln.split()[3] for ln in block]
    assert sorted(modes) == ["follower", "follower", "leader"], s.stdout
    d = squall(["cluster", "down", "--run", run_id], tmp_path, timeout_s=120)
    assert d.returncode == 0, d.stderr
    assert "removed 3 containers and 1 networks" in d.stdout
    assert dk.leftovers(docker_client, run_id) == {"containers": [], "networks": []}
