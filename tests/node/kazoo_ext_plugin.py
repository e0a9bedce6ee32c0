"""A pytest plugin that runs kazoo's own tests against already-running servers.

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

Stopping and restarting servers. By default the servers cannot be stopped,
restarted or given TLS: those calls raise ``ExternalServerError`` naming what
the test asked for, so a test that needs the harness to manage servers fails
with a clear reason instead of silently passing. When ``ZK_EXTERNAL_CONTROL``
names a Unix socket served by a ``ClusterControl`` in the process that started
the servers, a server's ``stop()`` and ``run()`` ask that process to stop
(SIGTERM, then SIGKILL after a grace) or restart its member on the same port
and data dir, as kazoo's ``ManagedZooKeeper`` does with its Java processes.
The servers stay owned by the process that started them, which kills them
all in its own teardown whatever kazoo's tests did (or if their interpreter
was killed): the test run never starts a server it could leave behind.
"""

from __future__ import annotations

import os
import socket
import socketserver
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pytest

ENV_HOSTS = "ZK_EXTERNAL_HOSTS"
ENV_CONTROL = "ZK_EXTERNAL_CONTROL"
ENV_PROGRESS = "ZK_EXTERNAL_PROGRESS"  # a file: each test's id is appended as it starts
CONTROL_TIMEOUT_S = 120.0  # a restart waits for ``ruok``; a stop for SIGTERM's grace


class ExternalServerError(RuntimeError):
    """A kazoo test asked the stub cluster for something only a managed cluster can do."""


def _control_request(path: str, line: str) -> None:
    """Send one command to the ``ClusterControl`` at ``path``; raise with its error, if any."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONTROL_TIMEOUT_S)
        sock.connect(path)
        sock.sendall(line.encode() + b"\n")
        answer = sock.makefile("r", encoding="utf-8").readline().strip()
    if answer != "ok":
        raise ExternalServerError(f"cluster control refused {line!r}: {answer or 'no answer'}")


class ExternalServer:
    """Stands in for ``kazoo.testing.common.ManagedZooKeeper``: an address, running unless stopped."""

    def __init__(self, address: str, index: int = 0, control: str | None = None) -> None:
        self.address = address
        self.index = index
        self.control = control
        self.running = True

    @property
    def secure_address(self) -> str:
        raise ExternalServerError(f"external server {self.address}: no TLS port is known")

    def run(self) -> None:
        """Restart a server stopped through the control socket; nothing to do if it runs."""
        if self.running:
            return
        assert self.control is not None  # only a controlled server can have been stopped
        _control_request(self.control, f"start {self.index}")
        self.running = True

    def stop(self) -> None:
        if self.control is None:
            raise ExternalServerError(
                f"external server {self.address}: the test wants to stop a server, which only kazoo's"
                f" managed cluster can do (or a run with {ENV_CONTROL})"
            )
        if not self.running:
            return
        _control_request(self.control, f"stop {self.index}")
        self.running = False

    def destroy(self) -> None:
        self.stop()

    def get_logs(self, num_lines: int = 100) -> list[str]:
        return []


class ExternalCluster(list):
    """Stands in for ``kazoo.testing.common.ZookeeperCluster``."""

    def start(self) -> None:
        """Restart any server a test stopped (kazoo's ``setup_zookeeper`` calls this then)."""
        for server in self:
            server.run()

    def stop(self) -> None:
        """Never stop servers we did not start (kazoo calls this in teardown)."""

    def terminate(self) -> None:
        """As ``stop``: kazoo's ``tearDownClass`` calls it after every test class."""

    def get_logs(self) -> list[str]:
        return []

    def get_ssl_client_configuration(self) -> dict:
        raise ExternalServerError("external cluster: no TLS client configuration is known")


def parse_hosts(value: str | None, control: str | None = None) -> ExternalCluster:
    """``"h1:p1,h2:p2"`` -> a cluster of stub servers; a clear error otherwise."""
    if not value or not value.strip():
        raise pytest.UsageError(f"{ENV_HOSTS} is not set: give the external server(s) as host:port[,host:port...]")
    servers = []
    for index, item in enumerate(value.split(",")):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise pytest.UsageError(f"{ENV_HOSTS}: {item!r} is not host:port (e.g. 127.0.0.1:2181)")
        servers.append(ExternalServer(f"{host}:{port}", index, control))
    return ExternalCluster(servers)


def pytest_configure(config: pytest.Config) -> None:
    control = os.environ.get(ENV_CONTROL) or None
    if control is not None and not Path(control).is_socket():
        raise pytest.UsageError(f"{ENV_CONTROL}={control!r} is not a Unix socket (is the ClusterControl running?)")
    cluster = parse_hosts(os.environ.get(ENV_HOSTS), control)
    # kazoo's tests read these at import time (kazoo.tests.util) or in the harness.
    os.environ.setdefault("ZOOKEEPER_VERSION", "3.8.0")
    from kazoo.testing import harness

    harness.get_global_cluster = lambda: cluster


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    """Append the starting test's id to the progress file (a run that times out shows where it was).

    Not ``-v``: kazoo's TreeCache tests count live objects through the GC, and a verbose
    report keeps references that make them fail."""
    path = os.environ.get(ENV_PROGRESS)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(nodeid + "\n")


# --- the other end: in the process that owns the servers (tests, bench) ---


class Member(Protocol):
    """What ``ClusterControl`` needs of a server (``tests.node.servers.ServerProcess`` has it)."""

    @property
    def running(self) -> bool: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


class ClusterControl:
    """Serves ``stop N`` / ``start N`` for ``members`` on a Unix socket, in a thread.

    Use as a context manager; ``env()`` gives the variables a kazoo run needs.
    Requests are served concurrently (kazoo's read-only test stops two members
    from two threads at once); each member's own requests are serialised."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = list(members)
        self._locks = [threading.Lock() for _ in self.members]
        self._dir = tempfile.mkdtemp(prefix="kzctl-")  # short: a socket path has ~100 bytes at most
        self.path = os.path.join(self._dir, "control.sock")
        self.log: list[str] = []
        control = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode("utf-8", "replace").strip()
                answer = control.execute(line)
                self.wfile.write(answer.encode() + b"\n")

        self._server = socketserver.ThreadingUnixStreamServer(self.path, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="kazoo-cluster-control", daemon=True)

    def execute(self, line: str) -> str:
        """Run one command; return ``ok`` or ``error <why>``."""
        verb, _, arg = line.partition(" ")
        if verb not in ("stop", "start") or not arg.isdigit() or int(arg) >= len(self.members):
            return f"error: {line!r} is not 'stop N' or 'start N' with N in 0..{len(self.members) - 1}"
        index = int(arg)
        member = self.members[index]
        with self._locks[index]:
            try:
                if verb == "stop":
                    member.stop()
                elif not member.running:
                    member.start()
            except Exception as exc:  # reported to the test, which then fails with it
                self.log.append(f"{line}: {exc!r}")
                return f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.log.append(line)
        return "ok"

    def env(self) -> dict[str, str]:
        return {ENV_CONTROL: self.path}

    def __enter__(self) -> ClusterControl:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.rmdir(self._dir)
