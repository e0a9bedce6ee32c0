"""The Docker backend: one container per node, on a bridge network per run.

Layout of a run ``<id>`` (labels ``squall.run=<id>`` on everything, so
``squall cluster down`` finds what a crashed run left):

- network ``squall-<id>`` (a private bridge); containers ``squall-<id>-n1``..
  with hostnames and network aliases ``n1``..``nN``, ``NET_ADMIN`` for
  iptables, ``init`` (tini) as PID 1 so killed processes are reaped, and
  ``sleep infinity`` as the main process: the database is a separate process
  started with ``docker exec``, so killing it leaves the container (and the
  data) in place.
- each node's directory (config, data, log) is the host directory
  ``<run_dir>/nodes/<node>`` bind-mounted at the same path in the container,
  so the database's ``prepare`` writes paths valid on both sides, data
  survives kill/restart, and logs are plain files on the host.
- the client port (2181 in every container) is published on 127.0.0.1 at a
  free port; peers talk over the bridge at ``nK:2888/3888``.

Faults: a partition ``drop(src, dst)`` is an iptables rule in ``dst``'s
``SQUALL`` chain dropping packets from ``src``'s address; ``lossy(src, dst,
p)`` drops a fraction with ``-m statistic --mode random`` (tc netem is not
available here); ``pause`` is ``docker pause`` (the freezer: every process in
the container stops at once); ``kill`` is SIGKILL to the database's process
group; ``start`` runs the same argv again in the same container.

Packet faults (``shape``) live in a second chain, ``SQUALL-PKT``, so a
partition's heal does not clear them nor ``unshape`` a partition: loss is
the ``statistic`` match, a bandwidth limit a ``hashlimit`` rule dropping
``src``'s packets above the rate (TCP backs off to it). iptables cannot
delay packets and tc netem is not available here, so ``packet_kinds`` is
("loss", "bandwidth"): the nemesis never draws a delay, and ``shape`` with
a delay or jitter (and ``--latency``) is refused with that reason. Clock
faults are not offered: the node image carries no libfaketime, so
``--nemesis clock`` is refused for this backend before anything starts.

Cleanup is unconditional: ``teardown`` is idempotent, is called by the
runner's ``finally``, from ``atexit``, and on SIGTERM/SIGHUP (the local
backend's handlers, shared); a SIGKILLed harness leaves labelled leftovers
for ``squall cluster down``. A run's containers and network also carry
``squall.owner=<host>:<pid>`` (the harness process), so leftovers of a dead
run are told apart from a run still going: ``squall cluster down --all``
removes the dead runs' (``dead_runs``), and ``squall run --backend docker``
warns at its start when there are any.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shlex
import shutil
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import SetupError
from harness.backends.local import install_signal_handlers, node_names
from harness.dbs.base import (
    Installs,
    NodeContext,
    NodePorts,
    NodeStatus,
    leader_of,
    statuses,
    wait_until_ready,
    write_launch_files,
)

CLIENT_PORT = 2181
PEER_PORT = 2888
ELECTION_PORT = 3888
LABEL_RUN = "squall.run"
LABEL_NODE = "squall.node"
LABEL_KIND = "squall.kind"  # "run" (a squall run) or "manual" (squall cluster up)
LABEL_OWNER = "squall.owner"  # "<host>:<pid>" of the harness running the run
CHAIN = "SQUALL"
LABEL_DB = "squall.db"  # the database the containers run (squall cluster status asks it)
VENV_PYTHON = "/opt/squall/bin/python"

_log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[DockerCluster] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _teardown_all() -> None:
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for c in clusters:
        c.teardown()


atexit.register(_teardown_all)


def new_run_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)


# --------------------------------------------------------------- pure parts


def container_ports(all_nodes: list[str], node: str, hosts: dict[str, str] | None = None) -> NodePorts:
    """Ports as the database sees them inside its host/container: fixed
    well-known ports, peers by their host name (n1.. on the bridge)."""
    hosts = hosts or {n: n for n in all_nodes}
    return NodePorts(
        client=CLIENT_PORT,
        peer=PEER_PORT,
        election=ELECTION_PORT,
        peer_addresses={o: (hosts[o], PEER_PORT, ELECTION_PORT) for o in all_nodes if o != node},
        client_ports={o: CLIENT_PORT for o in all_nodes},
    )


def start_script(node_dir: str, argv: list[str], env: dict[str, str], log_path: str, pid_file: str) -> str:
    """A POSIX sh script that starts ``argv`` in its own session (so one
    signal to the group reaches the whole tree), appends to the log and
    records the pid (== pgid) in ``pid_file``."""
    env_part = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    cmd = " ".join(shlex.quote(a) for a in argv)
    return (
        f"cd {shlex.quote(node_dir)} && "
        f'echo "==== squall harness: starting at $(date +%s.%N)" >> {shlex.quote(log_path)} && '
        f"(env {env_part} setsid {cmd} >> {shlex.quote(log_path)} 2>&1 < /dev/null & "
        f"echo $! > {shlex.quote(pid_file)})"
    )


def signal_script(pid_file: str, sig: str) -> str:
    """Signal the process group recorded in pid_file; for KILL, wait until
    it is gone so a restart never races the old process for its ports."""
    q = shlex.quote(pid_file)
    s = f"[ -f {q} ] || exit 0; p=$(cat {q}); kill -{sig} -- -$p 2>/dev/null || kill -{sig} $p 2>/dev/null; "
    if sig == "KILL":
        s += f"for i in $(seq 1 100); do kill -0 $p 2>/dev/null || break; sleep 0.05; done; rm -f {q}; "
    return s + "exit 0"


def iptables_setup_script() -> str:
    return (
        f"iptables -N {CHAIN} 2>/dev/null; iptables -F {CHAIN}; "
        f"iptables -C INPUT -j {CHAIN} 2>/dev/null || iptables -I INPUT -j {CHAIN}"
    )


def drop_rule(src_ip: str, probability: float | None = None) -> list[str]:
    """iptables args dropping packets from src_ip (all, or a random share)."""
    args = ["iptables", "-A", CHAIN, "-s", src_ip]
    if probability is not None:
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"loss probability must be in (0, 1], got {probability}")
        args += ["-m", "statistic", "--mode", "random", "--probability", f"{probability:.4f}"]
    return args + ["-j", "DROP"]


PACKET_CHAIN = "SQUALL-PKT"


def packet_setup_script() -> str:
    return (
        f"iptables -N {PACKET_CHAIN} 2>/dev/null; "
        f"iptables -C INPUT -j {PACKET_CHAIN} 2>/dev/null || iptables -I INPUT -j {PACKET_CHAIN}"
    )


def packet_rules(
    src_ip: str, dst: str, delay_ms: float = 0, jitter_ms: float = 0, loss: float = 0.0, rate_kbps: float | None = None
) -> list[list[str]]:
    """iptables commands (in dst) degrading src_ip's packets; refuses delay."""
    if delay_ms or jitter_ms:
        raise ValueError(
            "the docker backend cannot delay packets: iptables has no delay and tc netem is "
            "not available; it supports packet loss and bandwidth limits"
        )
    rules = []
    if loss:
        rules.append(
            [
                "iptables",
                "-A",
                PACKET_CHAIN,
                "-s",
                src_ip,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                f"{float(loss):.4f}",
                "-j",
                "DROP",
            ]
        )
    if rate_kbps:
        bytes_per_s = max(1, int(float(rate_kbps) * 1000 / 8))
        rules.append(
            [
                "iptables",
                "-A",
                PACKET_CHAIN,
                "-s",
                src_ip,
                "-m",
                "hashlimit",
                # names are per container (dst): the source alone is unique; at most 15 chars
                "--hashlimit-name",
                "sq" + src_ip.replace(".", "")[-13:],
                "--hashlimit-mode",
                "srcip",
                "--hashlimit-above",
                f"{bytes_per_s}b/s",
                "-j",
                "DROP",
            ]
        )
    return rules


# --------------------------------------------------------------- the cluster


@dataclass
class _Node:
    name: str
    index: int
    dir: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path = Path("/dev/null")
    container: Any = None
    ip: str = ""
    host_port: int = 0
    paused: bool = False
    pending_heal: bool = False


class DockerCluster:
    """Nodes in containers. Implements the Cluster protocol and FaultTarget."""

    def __init__(
        self,
        db: Any,
        nodes: list[str],
        run_dir: Path,
        image: str,
        client: Any,
        run_id: str | None = None,
        kind: str = "run",
        lazy_data: bool = False,
    ) -> None:
        self.db = db
        self.lazy_data = lazy_data  # data dirs on lazyfs (host-side mounts), for the disk fault
        self._mounts: dict[str, Any] = {}
        self.nodes = list(nodes)
        self.run_dir = Path(run_dir).resolve()
        self.image = image
        self.client = client
        self.run_id = run_id or new_run_id()
        self.kind = kind
        self.network: Any = None
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.RLock()
        self._torn_down = False
        self.keep_on_exit = False  # squall cluster up: leave it running
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def labels(self) -> dict[str, str]:
        labels = {LABEL_RUN: self.run_id, LABEL_KIND: self.kind}
        if self.kind == "run":  # a `cluster up` cluster outlives its command on purpose
            labels[LABEL_OWNER] = owner_label()
        return labels

    # ------------------------------------------------------------ lifecycle
    def launch(self) -> None:
        self.network = self.client.networks.create(
            f"squall-{self.run_id}", driver="bridge", labels=self.labels, check_duplicate=True
        )
        if self.lazy_data:
            from harness.backends import lazyfs

            lazyfs.require_fuse()
            lazyfs.unmount_stale()
        for index, name in enumerate(self.nodes, start=1):
            node_dir = self.run_dir / "nodes" / name
            node_dir.mkdir(parents=True, exist_ok=True)
            n = _Node(name, index, node_dir)
            self._nodes[name] = n
            volumes = {str(node_dir): {"bind": str(node_dir), "mode": "rw"}}
            if self.lazy_data:
                volumes.update(self._mount_data_dir(n))
            n.container = self.client.containers.run(
                self.image,
                ["sleep", "infinity"],
                name=f"squall-{self.run_id}-{name}",
                hostname=name,
                detach=True,
                init=True,
                cap_add=["NET_ADMIN"],
                labels={**self.labels, LABEL_NODE: name, LABEL_DB: str(self.db.name)},
                network=self.network.name,
                ports={f"{CLIENT_PORT}/tcp": ("127.0.0.1", None)},
                volumes=volumes,
                environment={"LANG": "C.UTF-8"},
            )
        self.network.reload()
        for n in self._nodes.values():
            n.container.reload()
            n.ip = n.container.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]
            n.host_port = int(n.container.attrs["NetworkSettings"]["Ports"][f"{CLIENT_PORT}/tcp"][0]["HostPort"])
            self._exec(n, iptables_setup_script(), check=True)
        for n in self._nodes.values():
            self._prepare(n)
        for mount in self._mounts.values():
            mount.settle()  # what prepare wrote (ZooKeeper's myid) is durable
        for name in self.nodes:
            self.start(name)

    def _mount_data_dir(self, n: _Node) -> dict[str, Any]:
        """An empty lazyfs mount on the host at ``<node dir>/data``, bound into the container."""
        from harness.backends import lazyfs

        mount = self._mounts[n.name] = lazyfs.mount_empty_data_dir(n.dir, n.dir / "lazyfs.log")
        return {str(mount.mountpoint): {"bind": str(mount.mountpoint), "mode": "rw"}}

    def lose_unsynced(self, node: str) -> dict[str, Any]:
        """Kill the node and drop what it never fsynced (the host-side lazyfs mount)."""
        mount = self._mounts.get(node)
        if mount is None:
            raise SetupError(
                "lose_unsynced needs the data dirs on lazyfs: the Docker backend mounts "
                "them only when 'disk' is among the run's faults"
            )
        self.kill(node)
        return mount.drop()

    def _prepare(self, n: _Node) -> None:
        """The database's launch for a node in its own container: listening on
        every interface, named by its host name, the image's interpreter; the
        node directory is bind-mounted at the same path, so files written here
        are the container's."""
        launch = self.db.prepare(
            NodeContext(
                name=n.name,
                index=n.index,
                nodes=tuple(self.nodes),
                dir=str(n.dir),
                ports=container_ports(self.nodes, n.name),
                listen_host="0.0.0.0",
                host=n.name,
                python=VENV_PYTHON,
                local=False,
            )
        )
        write_launch_files(n.dir, launch)
        n.argv, n.env, n.log_path = list(launch.argv), dict(launch.env), n.dir / launch.log
        needs = self.db.host_needs() if isinstance(self.db, Installs) else None
        if needs is not None and needs.probe:
            out = self._exec(n, f"{needs.probe} 2>&1; echo rc=$?")
            if not out.rstrip().endswith("rc=0"):
                raise SetupError(
                    f"the node image {self.image} lacks what --db {self.db.name} needs "
                    f"(`{needs.probe}` failed in {n.container.name}; Debian packages: "
                    f"{', '.join(needs.debian_packages) or 'none named'}): {out.strip()[-300:]}"
                )

    def teardown(self) -> None:
        """Remove every container and the network. Idempotent."""
        with self._lock:
            if self._torn_down or self.keep_on_exit:
                return
            self._torn_down = True
            errors = remove_run(self.client, self.run_id)
            for mount in self._mounts.values():
                mount.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if errors:
            raise SetupError(
                "teardown left Docker objects behind: " + "; ".join(errors) + " (run `squall cluster down`)"
            )

    def __enter__(self) -> DockerCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.teardown()

    # ------------------------------------------------------------ helpers
    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise ValueError(f"unknown node {name!r}; nodes are {self.nodes}") from None

    def _exec(self, n: _Node, script: str, check: bool = False, detach: bool = False) -> str:
        with self._lock:  # one SDK session shared by runner and nemesis threads
            res = n.container.exec_run(["sh", "-c", script], detach=detach)
        if detach:
            return ""
        out = (res.output or b"").decode(errors="replace")
        if check and res.exit_code != 0:
            raise SetupError(
                f"in container {n.container.name}: `{script}` failed (exit {res.exit_code}): {out.strip()[-300:]}"
            )
        return out

    # ------------------------------------------------------------ addresses
    def client_address(self, node: str) -> str:
        return f"127.0.0.1:{self._node(node).host_port}"

    def connect_string(self, nodes: list[str] | None = None) -> str:
        return ",".join(self.client_address(n) for n in (nodes or self.nodes))

    def ip(self, node: str) -> str:
        return self._node(node).ip

    def log_path(self, node: str) -> Path:
        return self._node(node).log_path

    # --------------------------------------------------------------- health
    def node_status(self, node: str) -> NodeStatus:
        return self.db.status(self.client_address(node))

    def leader(self) -> str | None:
        return leader_of(self.db, statuses(self.db, self._addresses(), 0.5))

    def _addresses(self) -> dict[str, str]:
        return {n: self.client_address(n) for n in self.nodes}

    def is_running(self, node: str) -> bool:
        n = self._node(node)
        if n.paused:
            return True
        return (
            self._exec(
                n, f"p=$(cat {shlex.quote(str(n.dir / 'pid'))} 2>/dev/null) && kill -0 $p 2>/dev/null && echo yes"
            ).strip()
            == "yes"
        )

    def wait_ready(self, timeout_s: float) -> None:
        """Every node runs and serves, and (a Primary database) one leads."""
        wait_until_ready(
            self.db,
            self._addresses,
            timeout_s,
            check_running=self._check_running,
            check_every_s=2.0,
            poll_s=0.25,
            where=str(self.run_dir / "nodes"),
            what=f"docker cluster {self.run_id}",
        )

    def _check_running(self) -> None:
        for name in self.nodes:
            if not self.is_running(name):
                n = self._node(name)
                raise SetupError(
                    f"node {name} (container {n.container.name}) is not running; "
                    f"its log is {n.log_path}{_tail(n.log_path)}"
                )

    def collect_logs(self, dest_dir: Path) -> list[Path]:
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for n in self._nodes.values():
            if n.log_path.exists():
                target = dest_dir / f"{n.name}.log"
                shutil.copyfile(n.log_path, target)
                copied.append(target)
        return copied

    # --------------------------------------------------------------- faults
    def drop(self, src: str, dst: str) -> None:
        """dst stops receiving packets from src (TCP to and from src stalls)."""
        s, d = self._node(src), self._node(dst)
        self._rule(d, drop_rule(s.ip))

    def lossy(self, src: str, dst: str, probability: float) -> None:
        """dst drops a random share of src's packets."""
        s, d = self._node(src), self._node(dst)
        self._rule(d, drop_rule(s.ip, probability))

    def _rule(self, d: _Node, args: list[str]) -> None:
        with self._lock:
            if d.paused:  # a frozen container cannot exec; unfreeze briefly
                d.container.unpause()
                try:
                    self._exec(d, shlex.join(args), check=True)
                finally:
                    d.container.pause()
            else:
                self._exec(d, shlex.join(args), check=True)

    packet_kinds = ("loss", "bandwidth")

    def shape(
        self,
        src: str,
        dst: str,
        delay_ms: float = 0,
        jitter_ms: float = 0,
        loss: float = 0.0,
        rate_kbps: float | None = None,
    ) -> None:
        """dst drops a share of src's packets and/or those above a rate (no delay here)."""
        s, d = self._node(src), self._node(dst)
        rules = packet_rules(s.ip, dst, delay_ms, jitter_ms, loss, rate_kbps)
        self._rule(d, ["sh", "-c", packet_setup_script()])
        for args in rules:
            self._rule(d, args)

    def unshape(self) -> None:
        """Flush every node's packet-fault chain (frozen nodes briefly thawed)."""
        with self._lock:
            for n in self._nodes.values():
                self._rule(n, ["sh", "-c", f"iptables -F {PACKET_CHAIN} 2>/dev/null; true"])

    def heal(self) -> None:
        with self._lock:
            for n in self._nodes.values():
                if n.paused:
                    n.pending_heal = True  # flushed on resume
                else:
                    self._exec(n, f"iptables -F {CHAIN}", check=True)

    def pause(self, node: str) -> None:
        with self._lock:
            n = self._node(node)
            if not n.paused:
                n.container.pause()
                n.paused = True

    def resume(self, node: str) -> None:
        with self._lock:
            n = self._node(node)
            if n.paused:
                n.container.unpause()
                n.paused = False
            if n.pending_heal:
                self._exec(n, f"iptables -F {CHAIN}", check=True)
                n.pending_heal = False

    def kill(self, node: str) -> None:
        with self._lock:
            n = self._node(node)
            self.resume(node)  # a frozen process cannot be waited for
            self._exec(n, signal_script(str(n.dir / "pid"), "KILL"))

    def start(self, node: str) -> None:
        with self._lock:
            if self._torn_down:
                raise SetupError("cluster was torn down; cannot start nodes")
            n = self._node(node)
            self.resume(node)
            if self.is_running(node):
                return
            self._exec(n, start_script(str(n.dir), n.argv, n.env, str(n.log_path), str(n.dir / "pid")), check=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n--- last lines of the log ---\n" + "\n".join(text) if text else ""


# ------------------------------------------------------------ leftovers


def remove_run(client: Any, run_id: str | None) -> list[str]:
    """Remove containers and networks labelled with ``run_id`` (every squall
    run's when None). Returns error strings for what could not be removed."""
    label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN
    errors: list[str] = []
    for c in client.containers.list(all=True, filters={"label": label}):
        try:
            if c.status == "paused":
                c.unpause()
            c.remove(force=True, v=True)
        except Exception as exc:  # noqa: BLE001 - keep removing the rest
            if "No such container" not in str(exc) and "already in progress" not in str(exc):
                errors.append(f"container {c.name}: {exc}")
    for net in client.networks.list(filters={"label": label}):
        try:
            net.remove()
        except Exception as exc:  # noqa: BLE001
            if "not found" not in str(exc).lower():
                errors.append(f"network {net.name}: {exc}")
    return errors


def leftovers(client: Any, run_id: str | None = None) -> dict[str, list[str]]:
    """Names of squall containers and networks still present."""
    label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters={"label": label})],
        "networks": [n.name for n in client.networks.list(filters={"label": label})],
    }


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    """Is the harness named by a ``squall.owner`` label still running? An
    owner on another host cannot be checked here and counts as alive; a run
    without the label (an older squall) counts as dead."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return host != socket.gethostname()
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_runs(client: Any) -> dict[str, list[str]]:
    """Run id -> container and network names, for squall runs whose harness is gone."""
    out: dict[str, list[str]] = {}
    things = client.containers.list(all=True, filters={"label": f"{LABEL_KIND}=run"}) + client.networks.list(
        filters={"label": f"{LABEL_KIND}=run"}
    )
    for thing in things:
        labels = getattr(thing, "labels", None) or (getattr(thing, "attrs", None) or {}).get("Labels") or {}
        if not owner_alive(labels.get(LABEL_OWNER)):
            out.setdefault(labels.get(LABEL_RUN, "?"), []).append(thing.name)
    return out


def warn_about_dead_runs(client: Any) -> str | None:
    """Say (on stderr and in the log) when dead runs left containers behind."""
    dead = dead_runs(client)
    if not dead:
        return None
    count = sum(len(v) for v in dead.values())
    msg = (
        f"warning: {count} container(s) or network(s) of {len(dead)} dead squall run(s) are still there "
        f"({', '.join(sorted(dead))}); remove them with `squall cluster down --all`"
    )
    _log.warning(msg)
    print(msg, file=sys.stderr, flush=True)
    return msg


class DockerBackend:
    """``create`` builds (or finds) the image, makes the network and the
    containers and starts the database; a failure during setup removes what
    was created. Options: ``docker_image`` (a tag to use instead of
    building)."""

    name = "docker"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def create(self, spec: Any, db: Any, run_dir: Path, kind: str = "run", run_id: str | None = None) -> DockerCluster:
        from harness.backends import images

        install_signal_handlers()
        nodes = node_names(getattr(spec, "nodes", spec))
        client = images.docker_client()
        if kind == "run":
            warn_about_dead_runs(client)
        image = self.options.get("docker_image") or images.ensure_node_image(client).tag
        lazy_data = "disk" in tuple(getattr(spec, "nemesis", ()) or ())
        cluster = DockerCluster(db, nodes, Path(run_dir), image, client, run_id=run_id, kind=kind, lazy_data=lazy_data)
        try:
            cluster.launch()
        except BaseException:
            cluster.teardown()
            raise
        return cluster


def make(options: dict[str, Any] | None = None) -> DockerBackend:
    return DockerBackend(options)
