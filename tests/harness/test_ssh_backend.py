"""The SSH backend, tested the way a user runs it: against real sshd servers
(containers from the ``squall-sshd`` image: Debian with openssh-server,
zookeeper and a JRE, accepting a key generated on this machine), never with
mocks. Needs a Docker engine to host the sshd servers: skipped with a
message when none answers, failed when CI=true. Every test removes its
containers and network, by label, even when it fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import docker as dk
from harness.backends import images, ssh
from harness.backends.base import SetupError

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ pure


def test_parse_hosts_with_ports_and_errors():
    assert ssh.parse_hosts("a,b:2222, c ", 22) == (("a", 22), ("b", 2222), ("c", 22))
    assert ssh.parse_hosts(["h1", "h2"], 2200) == (("h1", 2200), ("h2", 2200))
    with pytest.raises(SetupError, match="needs hosts"):
        ssh.parse_hosts("", 22)
    with pytest.raises(SetupError, match="not a number"):
        ssh.parse_hosts("a:x", 22)
    with pytest.raises(SetupError, match="distinct"):
        ssh.parse_hosts("a,a", 22)


def test_options_come_from_spec_options_then_environment(tmp_path):
    key = tmp_path / "k"
    key.write_text("x")
    env = {"SQUALL_SSH_HOSTS": "e1,e2", "SQUALL_SSH_USER": "bob", "SQUALL_SSH_PORT": "2022", "SQUALL_SSH_KEY": str(key)}
    o = ssh.options_from({}, env)
    assert o.hosts == (("e1", 2022), ("e2", 2022)) and o.user == "bob" and o.key == str(key)
    o = ssh.options_from({"ssh_hosts": "x", "ssh_user": "root", "ssh_strict_host_key_checking": True}, env)
    assert o.hosts == (("x", 2022),) and o.user == "root" and o.strict_host_key_checking
    with pytest.raises(SetupError, match="no such file"):
        ssh.options_from({"ssh_hosts": "x", "ssh_key": str(tmp_path / "missing")}, {})


# ----------------------------------------------------------- integration

integration = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]


def _need_docker():
    try:
        return images.docker_client()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no Docker engine: {exc}")
        pytest.skip(f"no Docker engine to host sshd servers: {exc}")


def _wait_port(host: str, port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"sshd at {host}:{port} did not accept connections in {timeout_s}s")


@pytest.fixture
def sshd_hosts():
    """A factory: ``sshd_hosts(n)`` -> n container IPs running sshd."""
    client = _need_docker()
    image = images.ensure_sshd_image(client).tag
    run_id = "sshtest-" + dk.new_run_id()
    labels = {dk.LABEL_RUN: run_id, dk.LABEL_KIND: "test"}

    def make(n: int) -> list[str]:
        net = client.networks.create(f"squall-{run_id}", driver="bridge", labels=labels)
        ips = []
        for i in range(1, n + 1):
            c = client.containers.run(
                image,
                name=f"squall-{run_id}-h{i}",
                hostname=f"h{i}",
                detach=True,
                init=True,
                cap_add=["NET_ADMIN"],
                labels=labels,
                network=net.name,
            )
            c.reload()
            ips.append(c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"])
        for ip in ips:
            _wait_port(ip, 22)
        return ips

    try:
        yield make
    finally:
        dk.remove_run(client, run_id)
        assert dk.leftovers(client, run_id) == {"containers": [], "networks": []}


def squall(args: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 900) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        ["timeout", str(int(timeout_s)), sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
    )


def _ssh_env(ips: list[str]) -> dict[str, str]:
    key, _ = images.ssh_keypair()
    return {"SQUALL_SSH_HOSTS": ",".join(ips), "SQUALL_SSH_USER": "root", "SQUALL_SSH_KEY": str(key)}


@pytest.mark.zookeeper
@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.slow
def test_run_zookeeper_over_ssh_is_valid(sshd_hosts, tmp_path):
    ips = sshd_hosts(3)
    r = squall(
        [
            "run",
            "--backend",
            "ssh",
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
            "25",
            "--seed",
            "5",
            "--no-progress",
        ],
        tmp_path,
        _ssh_env(ips),
    )
    run_dir = (tmp_path / "results" / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
    assert results["valid"] is True
    logs = sorted(p.name for p in (run_dir / "logs").glob("*.log"))
    assert logs == ["n1.log", "n2.log", "n3.log"]
    assert "QuorumPeer" in (run_dir / "logs" / "n1.log").read_text(errors="replace")
    nemesis = [
        json.loads(line)
        for line in (run_dir / "history.jsonl").read_text().splitlines()
        if '"nemesis"' in line and '"info"' in line
    ]
    assert nemesis, "no fault was carried out"


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.slow
def test_run_squall_over_ssh_installs_the_wheel_and_is_valid(sshd_hosts, tmp_path):
    ips = sshd_hosts(1)
    r = squall(
        [
            "run",
            "--backend",
            "ssh",
            "--db",
            "squall",
            "--nodes",
            "1",
            "--workload",
            "register",
            "--nemesis",
            "pause,kill",
            "--nemesis-interval",
            "3",
            "--time-limit",
            "15",
            "--seed",
            "5",
            "--no-progress",
        ],
        tmp_path,
        _ssh_env(ips),
    )
    run_dir = (tmp_path / "results" / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert r.returncode == 0, f"exit {r.returncode}: {results.get('summary')}\n{r.stderr[-3000:]}"
    assert results["valid"] is True
    assert (run_dir / "logs" / "n1.log").stat().st_size > 0


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.slow
def test_unreachable_host_and_refused_auth_name_the_host(sshd_hosts, tmp_path):
    ips = sshd_hosts(1)
    key, _ = images.ssh_keypair()
    # a closed port: nothing listens on it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    backend = ssh.SshBackend({"ssh_hosts": f"127.0.0.1:{closed}", "ssh_key": str(key)})
    with pytest.raises(SetupError) as e:
        backend.create(1, None, tmp_path / "a")
    assert f"127.0.0.1:{closed}" in str(e.value) and "cannot connect" in str(e.value)
    # a key the server does not know
    import paramiko

    other = tmp_path / "other_key"
    paramiko.Ed25519Key  # noqa: B018 - ensure the key class exists in this paramiko
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=60)
    backend = ssh.SshBackend({"ssh_hosts": ips[0], "ssh_key": str(other)})
    with pytest.raises(SetupError) as e:
        backend.create(1, None, tmp_path / "b")
    assert ips[0] in str(e.value) and "authentication refused" in str(e.value)
    # strict host key checking refuses a host not in known_hosts
    backend = ssh.SshBackend({"ssh_hosts": ips[0], "ssh_key": str(key), "ssh_strict_host_key_checking": True})
    with pytest.raises(SetupError) as e:
        backend.create(1, None, tmp_path / "c")
    assert ips[0] in str(e.value) and "known_hosts" in str(e.value)
