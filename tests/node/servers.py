"""Start, stop and restart real coordination servers for tests and benchmarks.

Two kinds: the squall node (``python -m harness.cli node ...``) and Apache
ZooKeeper 3.8 standalone from Debian's ``zookeeper`` package (the reference).
Both run as subprocesses in their own process group, so a kill takes every
child with it; readiness means the port accepts *and* ``ruok`` answers
``imok`` (and, for a standalone ZooKeeper, a session opens).

This module is shared by ``tests/node/conftest.py`` (the fixtures) and
``bench/node.py`` (the kazoo probe); of the project it imports only
``harness.ports`` and ``harness.watchdog`` (which import nothing), so it never
drags the node's code into the test process: the node under test is always a
separate process, as a real client would see it. Every server is registered
with this process's watchdog, which kills it if this process dies without
stopping it (a test runner or bench killed with SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import ports
from harness.watchdog import Watchdog

REPO_ROOT = Path(__file__).resolve().parents[2]

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# The jar's manifest lacks the servlet API (AdminServer) and an SLF4J binding.
ZOOKEEPER_CLASSPATH = ":".join(
    [str(ZOOKEEPER_JAR), "/usr/share/java/servlet-api.jar", "/usr/share/java/slf4j-simple.jar"]
)
ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")
# kazoo's own harness gives Apache ZooKeeper this superuser ("super:test");
# passing the same property keeps kazoo's tests comparable between servers.
ZOOKEEPER_SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="

READY_TIMEOUT_S = 30.0
# the node misbehaves on purpose when this is set (node/faults.py; for the harness's own
# tests); a conformance test must never inherit it by accident.
UNSAFE_FAULT_ENV = "SQUALL_UNSAFE_TEST_FAULT"


class ServerStartError(RuntimeError):
    """A server process exited or never answered ``ruok``; carries its log tail."""


def zookeeper_installed() -> bool:
    return ZOOKEEPER_JAR.exists()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago: from this worker's ``$SQUALL_PORT_RANGE``
    under pytest-xdist (``harness.ports``, ``tests/conftest.py``), else one the
    kernel hands out (a tiny race, acceptable for tests)."""
    return ports.free_port(host)


def four_letter_word(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send a four-letter word on the client port; return the whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def server_mode(m: ServerProcess) -> str:
    """The ``Mode:`` that ``srvr`` reports (leader, follower, standalone...), or "down"."""
    if not m.running:
        return "down"
    try:
        text = four_letter_word(m.host, m.port, "srvr", timeout=1.0)
    except OSError:
        return "down"
    for line in text.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return "?"


_WATCHDOGS: dict[int, Watchdog] = {}  # this process's id -> its watchdog (a forked child makes its own)
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> Watchdog:
    """The watchdog of this process's servers: it SIGKILLs every server group still registered
    once this process is gone, however it died (a test runner or bench killed with SIGKILL,
    whose ``finally`` never ran). The local backend's (``harness.watchdog``)."""
    with _WATCHDOG_LOCK:
        dog = _WATCHDOGS.get(os.getpid())
        if dog is None:
            dog = _WATCHDOGS[os.getpid()] = Watchdog()
        return dog


@dataclass
class ServerProcess:
    """One server process that can be killed and restarted on the same data dir and port."""

    kind: str  # "squall" or "zookeeper"
    host: str
    port: int
    data_dir: Path
    argv: list[str]
    log_path: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    starts: int = 0
    # A standalone ZooKeeper is ready only when it opens a session: it answers ``ruok`` before
    # it loads its database and serves (a client that connects then is dropped), and a freshly
    # started JVM under load can take seconds more. The node serves once its port is open;
    # ensemble members are ready at ``ruok`` (they serve only with a quorum).
    serves_alone: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT_S) -> ServerProcess:
        if self.running:
            raise RuntimeError(f"{self.kind} server on {self.address} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: a kill takes the children too
            )
        self.starts += 1
        _watchdog().register(self.proc.pid)  # its own session: the group id is its pid
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != UNSAFE_FAULT_ENV}
        return {**env, **self.env}  # a fault is injected only when asked for explicitly

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.kind} server exited with code {self.proc.returncode} before it was ready;"
                    f" log tail:\n{self.log_tail()}"
                )
            try:
                answer = four_letter_word(self.host, self.port, "ruok", timeout=1.0)
                if answer.strip() != "imok":
                    last_error = f"ruok answered {answer!r}"
                elif not self.serves_alone:
                    return
                else:
                    remaining = deadline - time.monotonic()
                    open_and_close_session(self.host, self.port, timeout=min(5.0, max(1.0, remaining)))
                    return
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.05)
        raise ServerStartError(
            f"{self.kind} server on {self.address} not ready after {timeout:.0f}s ({last_error});"
            f" log tail:\n{self.log_tail()}"
        )

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash: no shutdown code runs)."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=30)
        _watchdog().forget(self.proc.pid)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always leaves nothing running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def restart(self, timeout: float = READY_TIMEOUT_S) -> ServerProcess:
        """Start again on the same port and data dir (after a kill or stop)."""
        if self.running:
            self.kill()
        return self.start(timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def squall_node(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_args: list[str] | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """A squall node process (not started yet); its data dir is ``data_dir``."""
    port = port or free_port(host)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "harness.cli",
        "node",
        "--data-dir",
        str(data_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--4lw-whitelist",
        "*",  # the tests ask every word (extra_args may override: the last flag wins)
        *(extra_args or []),
    ]
    pythonpath = os.pathsep.join(p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p)
    return ServerProcess(
        kind="squall",
        host=host,
        port=port,
        data_dir=data_dir,
        argv=argv,
        log_path=log_path or data_dir.parent / f"squall-{port}.out",
        cwd=REPO_ROOT,
        env={"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"},
    )


def zookeeper_standalone(
    base_dir: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    tick_ms: int = 2000,
    super_digest: bool = True,
    extra_config: dict[str, str] | None = None,
) -> ServerProcess:
    """An Apache ZooKeeper 3.8 standalone process (not started yet) under ``base_dir``."""
    if not zookeeper_installed():
        raise FileNotFoundError(f"{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package")
    port = port or free_port(host)
    base_dir = Path(base_dir)
    data_dir = base_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = base_dir / "zoo.cfg"
    cfg.write_text(
        "\n".join(
            [
                f"tickTime={tick_ms}",
                f"dataDir={data_dir}",
                f"clientPort={port}",
                f"clientPortAddress={host}",
                "admin.enableServer=false",  # no Jetty: faster start, no extra port
                "4lw.commands.whitelist=*",
                "maxClientCnxns=0",
                *(f"{k}={v}" for k, v in (extra_config or {}).items()),
                "",
            ]
        )
    )
    java_props = ["-Xmx512m"]
    if super_digest:
        java_props.append(f"-Dzookeeper.DigestAuthenticationProvider.superDigest={ZOOKEEPER_SUPER_DIGEST}")
    argv = [
        "java",
        *java_props,
        "-cp",
        ZOOKEEPER_CLASSPATH,
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(cfg),
    ]
    return ServerProcess(
        kind="zookeeper",
        host=host,
        port=port,
        data_dir=data_dir,
        argv=argv,
        log_path=base_dir / "server.log",
        cwd=base_dir,
        serves_alone=True,
    )


def zookeeper_ensemble(
    base_dir: Path,
    size: int = 3,
    host: str = "127.0.0.1",
    tick_ms: int = 2000,
    extra_config: dict[str, str] | None = None,
    java_props: list[str] | None = None,
) -> list[ServerProcess]:
    """An Apache ZooKeeper 3.8 ensemble of ``size`` members (not started yet) under ``base_dir``.

    Each member has its own data dir and ``myid``; ``server.N`` lines carry the
    client port (ZooKeeper's dynamic-config form). Members start and restart
    one by one (``ServerProcess.start`` waits for ``ruok``, which a member
    answers before it has a quorum)."""
    if not zookeeper_installed():
        raise FileNotFoundError(f"{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package")
    ports = [(free_port(host), free_port(host), free_port(host)) for _ in range(size)]
    servers = "\n".join(
        f"server.{i}={host}:{p}:{e}:participant;{host}:{c}" for i, (c, p, e) in enumerate(ports, start=1)
    )
    members = []
    for i, (client, _, _) in enumerate(ports, start=1):
        base = Path(base_dir) / f"zk{i}"
        data_dir = base / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "myid").write_text(f"{i}\n")
        cfg = base / "zoo.cfg"
        lines = [
            f"tickTime={tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={data_dir}",
            f"clientPort={client}",
            f"clientPortAddress={host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
            *(f"{k}={v}" for k, v in (extra_config or {}).items()),
            servers,
            "",
        ]
        cfg.write_text("\n".join(lines))
        argv = [
            "java",
            "-Xmx256m",
            f"-Dzookeeper.DigestAuthenticationProvider.superDigest={ZOOKEEPER_SUPER_DIGEST}",
            *(java_props or []),
            "-cp",
            ZOOKEEPER_CLASSPATH,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(cfg),
        ]
        members.append(
            ServerProcess(
                kind="zookeeper",
                host=host,
                port=client,
                data_dir=data_dir,
                argv=argv,
                log_path=base / "server.log",
                cwd=base,
            )
        )
    return members


# ---------------------------------------------------------------- a client that never reads (backpressure)


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _ustring(s: str) -> bytes:
    b = s.encode("utf-8")
    return len(b).to_bytes(4, "big", signed=True) + b


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _read_frame(s: socket.socket) -> bytes:
    got = b""
    while len(got) < 4 or len(got) < 4 + int.from_bytes(got[:4], "big"):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection before it answered")
        got += chunk
    return got[4:]


def _open_session(s: socket.socket, timeout_ms: int) -> bytes:
    """Send a ConnectRequest (a new session) on ``s`` and return the server's answer."""
    connect = (
        b"\0\0\0\0" + bytes(8) + timeout_ms.to_bytes(4, "big") + bytes(8) + (16).to_bytes(4, "big") + bytes(16) + b"\0"
    )
    s.sendall(_frame(connect))
    return _read_frame(s)


def open_and_close_session(host: str, port: int, timeout: float) -> None:
    """Open a session and close it again, by hand; raise ``OSError`` if the server does not serve."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        answer = _open_session(s, 10000)
        if len(answer) < 16 or int.from_bytes(answer[8:16], "big") == 0:
            raise ConnectionError(f"the server refused a session ({len(answer)}-byte answer)")
        close_session = -11
        s.sendall(_frame((1).to_bytes(4, "big") + close_session.to_bytes(4, "big", signed=True)))
        try:
            _read_frame(s)
        except OSError:
            pass  # served a session: ready (a server that requires SASL may drop the connection here)


def unread_flood(host: str, port: int, path: str, requests: int) -> socket.socket:
    """Open a session by hand, pipeline ``requests`` getData of ``path`` and never read a reply.

    Returns the socket (the caller closes it). Jute is written by hand here:
    this module imports nothing of the project."""
    s = socket.create_connection((host, port), timeout=10)
    _open_session(s, 30000)
    get_data = 4
    s.sendall(
        b"".join(
            _frame((xid + 1).to_bytes(4, "big") + get_data.to_bytes(4, "big") + _ustring(path) + b"\0")
            for xid in range(requests)
        )
    )
    return s
