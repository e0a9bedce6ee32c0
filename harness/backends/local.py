"""The local backend: every node a process on this machine.

Each node gets its own directory under ``<run_dir>/nodes/<name>/`` (config,
data, log) and its own free ports on 127.0.0.1. Peer traffic goes through a
``ProxyMesh`` (one proxy per directed link and port kind), so partitions need
no root. A database whose members must all name a peer by one address
(``PeerSockets``) dials Unix sockets named relative to its own directory
instead; the link's proxy listens under that name in the dialler's
directory. Every node runs in its own process group (``start_new_session``),
so pause/kill reach the whole tree the db started (e.g. a shell wrapper and
its JVM): pause = SIGSTOP, resume = SIGCONT, kill = SIGKILL, start = the same
argv again on the same data dir and ports.

Packet faults (``shape``/``unshape``) and the whole-run ``--latency`` go
through the proxy mesh. Clock faults: when the run's nemesis includes
``clock``, every node starts with libfaketime preloaded (``LD_PRELOAD``),
reading its offset from a per-node control file (``FAKETIME_TIMESTAMP_FILE``,
re-read at most once a second); only ``CLOCK_REALTIME`` is faked
(``FAKETIME_DONT_FAKE_MONOTONIC=1``, which the JVM needs, and which keeps
monotonic timers honest, as a wrong wall clock does on a real machine).
``clock_bump`` writes an offset, ``clock_strobe`` flips it from a thread,
``clock_reset`` writes "+0". libfaketime leaves a shared-memory segment per
process that loaded it when that process is killed; the cluster removes
those of its nodes' processes when they are killed or torn down.

Cleanup is unconditional: ``teardown`` (idempotent) kills every process group
and closes every proxy; the runner calls it in a ``finally``, and every live
cluster is also torn down from ``atexit``. SIGTERM/SIGHUP are turned into
``SystemExit`` (if no one else handles them) so ``finally`` blocks and atexit
run; SIGINT already raises KeyboardInterrupt.

When the harness dies without unwinding (SIGKILL, an OOM kill), a *watchdog*
does the cleanup: a small process of its own (its own session, so a
terminal's Ctrl-C does not reach it) that every cluster starts first. The
harness tells it each node's process group as it starts and reaps it; the
watchdog reads those lines from a pipe only the harness holds, so the pipe's
end of file means the harness is gone, whichever thread started the node
(PR_SET_PDEATHSIG would fire when the *thread* that forked exits, and the
nemesis thread restarts killed nodes), and it SIGKILLs every group still
registered. The proxies are threads of the harness and die with it.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends import clock as faketime
from harness.backends.base import SetupError
from harness.backends.proxy import ProxyMesh, free_ports
from harness.dbs.base import (
    NodeContext,
    NodePorts,
    NodeStatus,
    PeerSockets,
    leader_of,
    statuses,
    wait_until_ready,
    write_launch_files,
)
from harness.watchdog import Watchdog

_log = logging.getLogger(__name__)

# Strong references on purpose: a cluster dropped without teardown must
# still be torn down at exit, so its processes cannot outlive the harness.
_LIVE: set[LocalCluster] = set()
_LIVE_LOCK = threading.Lock()


def _teardown_all() -> None:
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for cluster in clusters:
        cluster.teardown()


atexit.register(_teardown_all)


def _exit_on_signal(signum: int, frame: Any) -> None:
    _teardown_all()
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Make SIGTERM/SIGHUP unwind (finally + atexit) instead of dying at once.

    Only from the main thread, and only where the handler is still the
    default: a caller's own handler wins."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _exit_on_signal)
        except (ValueError, OSError):
            pass


@dataclass
class _Node:
    name: str
    index: int
    ports: NodePorts
    dir: Path
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    paused: bool = False


def node_names(nodes: int | list[str] | tuple[str, ...]) -> list[str]:
    """``3`` -> ["n1", "n2", "n3"]; a list of names is kept as is."""
    if isinstance(nodes, int):
        if nodes < 1:
            raise SetupError(f"--nodes must be at least 1, got {nodes}")
        return [f"n{i}" for i in range(1, nodes + 1)]
    names = [str(n) for n in nodes]
    if not names or len(set(names)) != len(names):
        raise SetupError(f"node names must be non-empty and distinct, got {names}")
    return names


class LocalCluster:
    """Local node processes behind a proxy mesh. Implements FaultTarget."""

    packet_kinds = ("delay", "loss", "bandwidth")

    def __init__(
        self,
        db: Any,
        nodes: list[str],
        run_dir: Path,
        lazy_data: bool = False,
        *,
        clock: bool = False,
        latency_ms: float = 0.0,
    ) -> None:
        self.db = db
        self.lazy_data = lazy_data  # data dirs on lazyfs, for the disk fault
        self._mounts: dict[str, Any] = {}
        self.nodes = list(nodes)
        self.run_dir = Path(run_dir)
        self.clocks = faketime.Clocks(self.run_dir / "clock", self.nodes) if clock else None
        self.mesh = ProxyMesh()
        if latency_ms:
            self.mesh.set_latency(latency_ms)
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.RLock()
        self._torn_down = False
        self.watchdog = Watchdog()
        with _LIVE_LOCK:
            _LIVE.add(self)

    # ------------------------------------------------------------ lifecycle
    def launch(self) -> None:
        """Pick ports, build the mesh, write configs and start every node."""
        kinds = tuple(self.db.peer_kinds)
        # The nodes' ports and the proxies' listening ports come from one
        # draw, so they are distinct: a proxy left to bind port 0 could be
        # handed a node's port that was free a moment ago (the node binds
        # its ports only when it starts).
        # A database whose members must name a peer alike (PeerSockets)
        # dials Unix sockets named relative to its own directory; the link
        # proxies listen under those names in each dialler's directory.
        sockets = isinstance(self.db, PeerSockets)
        links = 0 if sockets else len(self.nodes) * (len(self.nodes) - 1) * (2 if "election" in kinds else 1)
        real = free_ports(3 * len(self.nodes) + links)
        base: dict[str, tuple[int, int, int]] = {
            n: (real[3 * i], real[3 * i + 1], real[3 * i + 2]) for i, n in enumerate(self.nodes)
        }
        proxy_ports = iter(real[3 * len(self.nodes) :])
        node_dirs = {n: self.run_dir / "nodes" / n for n in self.nodes}
        for d in node_dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for src in self.nodes:
            for dst in self.nodes:
                if src == dst:
                    continue
                _, peer, elect = base[dst]
                if sockets:
                    name = self.db.peer_socket(dst)
                    self.mesh.add_unix(src, dst, "peer", str(node_dirs[dst] / name), str(node_dirs[src] / name))
                    continue
                self.mesh.add(src, dst, "peer", peer, next(proxy_ports))
                if "election" in kinds:
                    self.mesh.add(src, dst, "election", elect, next(proxy_ports))
        for index, name in enumerate(self.nodes, start=1):
            client, peer, elect = base[name]
            peer_addresses = {}
            for other in self.nodes:
                if other == name:
                    continue
                if sockets:  # not dialled: the member dials its peers' sockets
                    peer_addresses[other] = ("127.0.0.1", base[other][1], base[other][2])
                    continue
                p = self.mesh.port(name, other, "peer")
                e = self.mesh.port(name, other, "election") if "election" in kinds else p
                peer_addresses[other] = ("127.0.0.1", p, e)
            ports = NodePorts(
                client=client,
                peer=peer,
                election=elect,
                peer_addresses=peer_addresses,
                client_ports={n: base[n][0] for n in self.nodes},
            )
            node_dir = self.run_dir / "nodes" / name
            node_dir.mkdir(parents=True, exist_ok=True)
            launch = self.db.prepare(
                NodeContext(
                    name=name,
                    index=index,
                    nodes=tuple(self.nodes),
                    dir=str(node_dir),
                    ports=ports,
                    python=sys.executable,
                    local=True,
                )
            )
            write_launch_files(node_dir, launch)
            self._nodes[name] = _Node(
                name, index, ports, node_dir, list(launch.argv), dict(launch.env), node_dir / launch.log
            )
        if self.lazy_data:
            self._mount_data_dirs()
        for name in self.nodes:
            self.start(name)

    def teardown(self) -> None:
        """Kill every process group and close every proxy. Idempotent."""
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
            _log.info("teardown: killing %d node(s), closing the proxies", len(self._nodes))
            for node in self._nodes.values():
                self._kill_proc(node)
            self._unmount_data_dirs()
            self.mesh.close()
            self.watchdog.close()
            if self.clocks is not None:
                self.clocks.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.teardown()

    # ------------------------------------------------------------ addresses
    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise ValueError(f"unknown node {name!r}; nodes are {self.nodes}") from None

    def client_address(self, node: str) -> str:
        return f"127.0.0.1:{self._node(node).ports.client}"

    def connect_string(self, nodes: list[str] | None = None) -> str:
        return ",".join(self.client_address(n) for n in (nodes or self.nodes))

    def log_path(self, node: str) -> Path:
        return self._node(node).log_path

    def pids(self) -> dict[str, int | None]:
        """Process (group) ids of running nodes, for tests and diagnostics."""
        return {n.name: (n.proc.pid if n.proc and n.proc.poll() is None else None) for n in self._nodes.values()}

    def listening_ports(self) -> list[int]:
        """Every port this cluster uses: client/peer/election and proxies."""
        ports = list(self.mesh.ports())
        for n in self._nodes.values():
            ports += [n.ports.client, n.ports.peer, n.ports.election]
        return ports

    # --------------------------------------------------------------- health
    def node_status(self, node: str) -> NodeStatus:
        return self.db.status(self.client_address(node))

    def is_running(self, node: str) -> bool:
        n = self._node(node)
        return n.proc is not None and n.proc.poll() is None

    def leader(self) -> str | None:
        return leader_of(self.db, statuses(self.db, self._addresses(), 0.5))

    def _addresses(self) -> dict[str, str]:
        return {n: self.client_address(n) for n in self.nodes}

    def wait_ready(self, timeout_s: float) -> None:
        """Every node runs and serves, and (a Primary database) one leads."""
        wait_until_ready(
            self.db, self._addresses, timeout_s, check_running=self._check_running, where=str(self.run_dir / "nodes")
        )

    def _check_running(self) -> None:
        for name in self.nodes:
            n = self._node(name)
            if n.proc is None or n.proc.poll() is not None:
                code = None if n.proc is None else n.proc.returncode
                raise SetupError(
                    f"node {name} is not running (exit code {code}); its log is {n.log_path}{_tail(n.log_path)}"
                )

    def collect_logs(self, dest_dir: Path) -> list[Path]:
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for n in self._nodes.values():
            if n.log_path.exists():
                target = dest_dir / f"{n.name}.log"
                if target.resolve() != n.log_path.resolve():
                    shutil.copyfile(n.log_path, target)
                copied.append(target)
        return copied

    # --------------------------------------------------------------- faults
    def drop(self, src: str, dst: str) -> None:
        self._node(src), self._node(dst)
        self.mesh.drop(src, dst)

    def heal(self) -> None:
        self.mesh.heal()

    def pause(self, node: str) -> None:
        with self._lock:
            n = self._node(node)
            if n.proc is not None and n.proc.poll() is None:
                _signal_group(n.proc, signal.SIGSTOP)
                n.paused = True

    def resume(self, node: str) -> None:
        with self._lock:
            n = self._node(node)
            if n.proc is not None and n.proc.poll() is None:
                _signal_group(n.proc, signal.SIGCONT)
            n.paused = False

    def kill(self, node: str) -> None:
        with self._lock:
            self._kill_proc(self._node(node))

    def start(self, node: str) -> None:
        with self._lock:
            if self._torn_down:
                raise SetupError("cluster was torn down; cannot start nodes")
            n = self._node(node)
            if n.proc is not None and n.proc.poll() is None:
                if n.paused:  # "start" after "pause" means: make it run again
                    _signal_group(n.proc, signal.SIGCONT)
                    n.paused = False
                return
            env = dict(os.environ)
            env.update(n.env)
            env.update(self._clock_env(n.name, env))
            with open(n.log_path, "ab") as log:
                log.write(f"\n==== squall harness: starting {n.name} at {time.time():.3f}\n".encode())
                log.flush()
                n.proc = subprocess.Popen(
                    n.argv,
                    cwd=n.dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.watchdog.register(n.proc.pid)  # pid == pgid: start_new_session=True
            _log.info("started %s (pid %d): %s", n.name, n.proc.pid, " ".join(n.argv))
            n.paused = False

    # ---------------------------------------------- lazyfs (the disk fault)
    def _mount_data_dirs(self) -> None:
        """Put every node's data dir on its own lazyfs mount (harness/backends/lazyfs.py)."""
        from harness.backends import lazyfs

        lazyfs.require_fuse()
        lazyfs.unmount_stale()
        for n in self._nodes.values():
            self._mounts[n.name] = lazyfs.mount_data_dir(n.dir, n.dir / "lazyfs.log")

    def _unmount_data_dirs(self) -> None:
        for mount in self._mounts.values():
            mount.close()

    def lose_unsynced(self, node: str) -> dict[str, Any]:
        """Kill the node and drop every byte and entry it never fsynced; it stays down."""
        with self._lock:
            n = self._node(node)
            mount = self._mounts.get(node)
            if mount is None:
                raise SetupError(
                    "lose_unsynced needs the data dirs on lazyfs: the local backend mounts "
                    "them only when 'disk' is among the run's faults"
                )
            self._kill_proc(n)
            return mount.drop()

    def _kill_proc(self, n: _Node) -> None:
        if n.proc is None:
            return
        # Signal the group even if its leader exited: children may remain
        # (a pgid in use is never reused as a pid, so this cannot hit others).
        _signal_group(n.proc, signal.SIGKILL)
        try:
            n.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        else:
            self.watchdog.forget(n.proc.pid)
        _log.info("killed %s (pid %d)", n.name, n.proc.pid)
        n.paused = False
        self._clock_cleanup(n.proc.pid)

    # ------------------------------------------------ packet and clock faults
    def shape(
        self,
        src: str,
        dst: str,
        delay_ms: float = 0,
        jitter_ms: float = 0,
        loss: float = 0.0,
        rate_kbps: float | None = None,
    ) -> None:
        self._node(src), self._node(dst)
        self.mesh.shape(src, dst, delay_ms, jitter_ms, loss, rate_kbps)

    def unshape(self) -> None:
        self.mesh.unshape()

    def _clocks(self) -> faketime.Clocks:
        if self.clocks is None:
            raise SetupError(
                "clock faults need the cluster started with the clock preload (the run's --nemesis must include clock)"
            )
        return self.clocks

    def clock_bump(self, node: str, offset_ms: int) -> None:
        self._node(node)
        self._clocks().bump(node, offset_ms)

    def clock_strobe(self, node: str, delta_ms: int, period_ms: int) -> None:
        self._node(node)
        self._clocks().strobe(node, delta_ms, period_ms)

    def clock_reset(self) -> None:
        self._clocks().reset()

    def _clock_env(self, node: str, env: dict[str, str]) -> dict[str, str]:
        return {} if self.clocks is None else self.clocks.env(node, env.get("LD_PRELOAD", ""))

    def _clock_cleanup(self, pid: int) -> None:
        if self.clocks is not None:
            faketime.remove_shm(pid)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # pid == pgid: start_new_session=True
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n--- last lines of the log ---\n" + "\n".join(text) if text else ""


def fault_settings(spec: Any) -> dict[str, Any]:
    """clock (preload libfaketime) and latency_ms (--latency) from a spec."""
    faults = tuple(getattr(spec, "nemesis", ()) or ())
    options = getattr(spec, "option_dict", {}) or {}
    latency = float(options.get("latency_ms", 0) or 0)
    if latency < 0:
        raise SetupError(f"--latency must be >= 0 ms, got {latency:g}")
    if "clock" in faults:
        faketime.check_available()
    return {"clock": "clock" in faults, "latency_ms": latency}


class LocalBackend:
    """``create`` starts the nodes (without waiting for them) and returns
    the cluster; a failure during setup tears down what was started."""

    name = "local"

    def create(self, spec: Any, db: Any, run_dir: Path) -> LocalCluster:
        install_signal_handlers()
        nodes = node_names(getattr(spec, "nodes", spec))
        lazy_data = "disk" in tuple(getattr(spec, "nemesis", ()) or ())
        cluster = LocalCluster(db, nodes, Path(run_dir), lazy_data=lazy_data, **fault_settings(spec))
        try:
            cluster.launch()
        except BaseException:
            cluster.teardown()
            raise
        return cluster
