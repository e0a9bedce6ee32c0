"""A pytest plugin that runs kazoo's own tests against an already-running server.

kazoo's test harness (``kazoo.testing.harness``) normally launches a 3-node
Apache ZooKeeper cluster from jars. There is no setting to point it at an
external server, but its ``KazooTestHarness.cluster`` property calls the
module-level ``get_global_cluster()`` at run time, so replacing that function
is enough: the tests then connect to the addresses in ``ZK_EXTERNAL_HOSTS``.

Run it by hand (from the repository root, with a server on port 2181)::

    ZK_EXTERNAL_HOSTS=127.0.0.1:2181 CI=true ZOOKEEPER_VERSION=3.8.0 \\
    PYTHONPATH=. python -m pytest -p tests.node.kazoo_ext_plugin \\
        -p no:cacheprovider --pyargs kazoo.tests.test_client kazoo.tests.test_lock

``CI=true`` + ``ZOOKEEPER_VERSION`` make kazoo's tests take the server version
from the environment instead of probing it with ``envi``. kazoo's test modules
need ``pyjks``, ``pyOpenSSL<26.2.0`` and ``objgraph`` installed.

A stub server cannot be stopped, restarted or given TLS: those calls raise
``ExternalServerError`` naming what the test asked for, so a test that needs
the harness to manage servers fails with a clear reason instead of silently
passing.
"""

from __future__ import annotations

import os

import pytest

ENV_HOSTS = "ZK_EXTERNAL_HOSTS"


class ExternalServerError(RuntimeError):
    """A kazoo test asked the stub cluster for something only a managed cluster can do."""


class ExternalServer:
    """Stands in for ``kazoo.testing.common.ManagedZooKeeper``: an address, always running."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.running = True

    @property
    def secure_address(self) -> str:
        raise ExternalServerError(f"external server {self.address}: no TLS port is known")

    def run(self) -> None:
        """Already running; nothing to start."""

    def stop(self) -> None:
        raise ExternalServerError(
            f"external server {self.address}: the test wants to stop a server, "
            "which only kazoo's managed cluster can do"
        )

    def destroy(self) -> None:
        self.stop()

    def get_logs(self, num_lines: int = 100) -> list[str]:
        return []


class ExternalCluster(list):
    """Stands in for ``kazoo.testing.common.ZookeeperCluster``."""

    def start(self) -> None:
        """The servers are managed outside the test run."""

    def stop(self) -> None:
        """Never stop servers we did not start (kazoo calls this in teardown)."""

    def terminate(self) -> None:
        """As ``stop``: kazoo's ``tearDownClass`` calls it after every test class."""

    def get_logs(self) -> list[str]:
        return []

    def get_ssl_client_configuration(self) -> dict:
        raise ExternalServerError("external cluster: no TLS client configuration is known")


def parse_hosts(value: str | None) -> ExternalCluster:
    """``"h1:p1,h2:p2"`` -> a cluster of stub servers; a clear error otherwise."""
    if not value or not value.strip():
        raise pytest.UsageError(f"{ENV_HOSTS} is not set: give the external server(s) as host:port[,host:port...]")
    servers = []
    for item in value.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise pytest.UsageError(f"{ENV_HOSTS}: {item!r} is not host:port (e.g. 127.0.0.1:2181)")
        servers.append(ExternalServer(f"{host}:{port}"))
    return ExternalCluster(servers)


def pytest_configure(config: pytest.Config) -> None:
    cluster = parse_hosts(os.environ.get(ENV_HOSTS))
    # kazoo's tests read these at import time (kazoo.tests.util) or in the harness.
    os.environ.setdefault("ZOOKEEPER_VERSION", "3.8.0")
    from kazoo.testing import harness

    harness.get_global_cluster = lambda: cluster
