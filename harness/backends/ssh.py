"""The SSH backend: one node per real host, driven over SSH with paramiko.

Options (from the spec's options, else the environment):

==========================  ===========================  ======================
option                      environment                  meaning
==========================  ===========================  ======================
``ssh_hosts``               ``SQUALL_SSH_HOSTS``         host[:port],... (n1 is
                                                         the first host, ...)
``ssh_user``                ``SQUALL_SSH_USER``          login (default root)
``ssh_key``                 ``SQUALL_SSH_KEY``           private key file
``ssh_port``                ``SQUALL_SSH_PORT``          default 22
``ssh_strict_host_key_...`` ``SQUALL_SSH_STRICT``        reject unknown host
                                                         keys (known_hosts)
==========================  ===========================  ======================

On each host, under ``/var/tmp/squall/``: what the database says its nodes
need (``harness.dbs.base.Installs``) is installed: Debian packages with
apt-get when its probe fails, and, for a database that runs from the squall
distribution, the project's wheel and its dependencies' wheels, installed
into a virtualenv offline (cached by the project's content hash). The
database's ``prepare`` is told the node's remote directory
(``/var/tmp/squall/<run_id>/<node>``) and its files are uploaded there. Processes are
started in their own session with a pid file; pause/resume/kill are
SIGSTOP/SIGCONT/SIGKILL to that process group; partitions are iptables rules
in a ``SQUALL`` chain (root needed); logs are downloaded with SFTP.

Nodes are reached at ``host:2181`` (peers at 2888/3888), so those ports must
be open between the harness and the hosts. A host that cannot be reached or
refuses authentication fails setup with a message naming the host and why.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import socket
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import SetupError
from harness.backends.docker import (
    CHAIN,
    CLIENT_PORT,
    container_ports,
    drop_rule,
    iptables_setup_script,
    new_run_id,
    signal_script,
    start_script,
)
from harness.backends.local import install_signal_handlers, node_names
from harness.dbs.base import HostNeeds, Installs, NodeContext, NodeStatus, leader_of, statuses, wait_until_ready

REMOTE_ROOT = "/var/tmp/squall"
CONNECT_TIMEOUT_S = 10.0

_LIVE: weakref.WeakSet[SshCluster] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _teardown_all() -> None:
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for c in clusters:
        c.teardown()


atexit.register(_teardown_all)


# --------------------------------------------------------------- options


@dataclass(frozen=True)
class SshOptions:
    hosts: tuple[tuple[str, int], ...]
    user: str = "root"
    key: str | None = None
    strict_host_key_checking: bool = False


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def parse_hosts(text: str | list[str], default_port: int) -> tuple[tuple[str, int], ...]:
    """ "a,b:2222" -> (("a", default), ("b", 2222)); errors say what is allowed."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        host, sep, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        if not sep:
            host, port = item, ""
        if not host:
            raise SetupError(f"ssh host {item!r} has no host name; expected host or host:port")
        try:
            p = int(port) if port else default_port
        except ValueError:
            raise SetupError(f"ssh host {item!r}: port {port!r} is not a number") from None
        if not 0 < p < 65536:
            raise SetupError(f"ssh host {item!r}: port {p} is out of range 1-65535")
        out.append((host, p))
    if not out:
        raise SetupError("the ssh backend needs hosts: --nodes host1,host2,... (or SQUALL_SSH_HOSTS)")
    if len(set(out)) != len(out):
        raise SetupError(f"ssh hosts must be distinct, got {[h for h, _ in out]}")
    return tuple(out)


def options_from(options: dict[str, Any], environ: dict[str, str] | None = None) -> SshOptions:
    """Spec options first, then SQUALL_SSH_* environment variables."""
    env = os.environ if environ is None else environ

    def get(key: str, env_key: str) -> Any:
        v = options.get(key)
        return v if v not in (None, "") else env.get(env_key)

    try:
        port = int(get("ssh_port", "SQUALL_SSH_PORT") or 22)
    except ValueError:
        raise SetupError(f"--ssh-port must be a number, got {get('ssh_port', 'SQUALL_SSH_PORT')!r}") from None
    hosts = get("ssh_hosts", "SQUALL_SSH_HOSTS") or ""
    key = get("ssh_key", "SQUALL_SSH_KEY")
    if key and not Path(key).expanduser().is_file():
        raise SetupError(f"--ssh-key {key}: no such file")
    return SshOptions(
        hosts=parse_hosts(hosts, port),
        user=str(get("ssh_user", "SQUALL_SSH_USER") or "root"),
        key=str(Path(key).expanduser()) if key else None,
        strict_host_key_checking=_truthy(get("ssh_strict_host_key_checking", "SQUALL_SSH_STRICT") or False),
    )


# --------------------------------------------------------------- a host


class Host:
    """One SSH connection; every command on it is serialised by a lock."""

    def __init__(self, host: str, port: int, opts: SshOptions) -> None:
        self.host, self.port, self.opts = host, port, opts
        self._lock = threading.RLock()
        self._client: Any = None

    @property
    def label(self) -> str:
        return f"{self.opts.user}@{self.host}:{self.port}"

    def connect(self) -> None:
        import paramiko

        client = paramiko.SSHClient()
        if self.opts.strict_host_key_checking:
            client.load_system_host_keys()
            known = Path.home() / ".ssh" / "known_hosts"
            if known.exists():
                client.load_host_keys(str(known))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.opts.user,
                key_filename=self.opts.key,
                timeout=CONNECT_TIMEOUT_S,
                banner_timeout=CONNECT_TIMEOUT_S,
                auth_timeout=CONNECT_TIMEOUT_S,
                look_for_keys=self.opts.key is None,
                allow_agent=False,
            )
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SetupError(
                f"ssh host {self.label}: authentication refused "
                f"(user {self.opts.user}, key {self.opts.key or 'default keys'}): {exc}"
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise SetupError(f"ssh host {self.label}: host key mismatch: {exc}") from None
        except (TimeoutError, OSError) as exc:
            client.close()
            raise SetupError(f"ssh host {self.label}: cannot connect: {exc.__class__.__name__}: {exc}") from None
        except paramiko.SSHException as exc:
            client.close()
            why = str(exc)
            if "not found in known_hosts" in why:
                why += " (strict host key checking is on: add the host to ~/.ssh/known_hosts)"
            raise SetupError(f"ssh host {self.label}: {why}") from None
        self._client = client

    def run(self, cmd: str, check: bool = True, timeout_s: float = 120.0) -> tuple[int, str]:
        with self._lock:
            if self._client is None:
                raise SetupError(f"ssh host {self.label}: not connected")
            try:
                _, stdout, stderr = self._client.exec_command(cmd, timeout=timeout_s)
                out = stdout.read().decode(errors="replace")
                err = stderr.read().decode(errors="replace")
                rc = stdout.channel.recv_exit_status()
            except (TimeoutError, OSError, EOFError) as exc:
                raise SetupError(f"ssh host {self.label}: command failed to run ({exc}): {cmd[:200]}") from None
        if check and rc != 0:
            raise SetupError(f"ssh host {self.label}: `{cmd[:200]}` exited {rc}: {(err or out).strip()[-400:]}")
        return rc, out

    def put(self, local: Path, remote: str) -> None:
        with self._lock:
            sftp = self._client.open_sftp()
            try:
                sftp.put(str(local), remote)
            finally:
                sftp.close()

    def put_text(self, text: str, remote: str) -> None:
        with self._lock:
            sftp = self._client.open_sftp()
            try:
                with sftp.open(remote, "w") as f:
                    f.write(text)
            finally:
                sftp.close()

    def get(self, remote: str, local: Path) -> bool:
        with self._lock:
            sftp = self._client.open_sftp()
            try:
                sftp.get(remote, str(local))
                return True
            except OSError:
                return False
            finally:
                sftp.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


# --------------------------------------------------------------- the cluster


@dataclass
class _Node:
    name: str
    index: int
    host: Host
    ip: str
    local_dir: Path
    remote_dir: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    remote_log: str = ""
    paused: bool = False


class SshCluster:
    """Nodes on SSH hosts. Implements the Cluster protocol and FaultTarget."""

    def __init__(self, db: Any, nodes: list[str], hosts: list[Host], run_dir: Path, run_id: str | None = None) -> None:
        self.db = db
        self.nodes = list(nodes)
        self.run_dir = Path(run_dir).resolve()
        self.run_id = run_id or new_run_id()
        self._hosts = hosts
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.RLock()
        self._torn_down = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    # ------------------------------------------------------------ lifecycle
    def launch(self) -> None:
        for h in self._hosts:
            h.connect()
        ips = {}
        for name, h in zip(self.nodes, self._hosts, strict=True):
            try:
                ips[name] = socket.gethostbyname(h.host)
            except OSError as exc:
                raise SetupError(f"ssh host {h.label}: cannot resolve its address: {exc}") from None
        addrs = {name: h.host for name, h in zip(self.nodes, self._hosts, strict=True)}
        for index, (name, h) in enumerate(zip(self.nodes, self._hosts, strict=True), start=1):
            local_dir = self.run_dir / "nodes" / name
            local_dir.mkdir(parents=True, exist_ok=True)
            self._nodes[name] = _Node(name, index, h, ips[name], local_dir, f"{REMOTE_ROOT}/{self.run_id}/{name}")
        python = self._install()
        for n in self._nodes.values():
            n.host.run(iptables_setup_script())
            self._prepare(n, addrs, python)
        for name in self.nodes:
            self.start(name)

    def _install(self) -> str:
        """Install what the database says its nodes need (``Installs``) on
        every host; returns the remote interpreter for ``NodeContext.python``."""
        needs = self.db.host_needs() if isinstance(self.db, Installs) else HostNeeds()
        if needs.debian_packages:
            for n in self._nodes.values():
                rc = n.host.run(needs.probe, check=False)[0] if needs.probe else 1
                if rc != 0:
                    n.host.run(
                        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                        + " ".join(shlex.quote(p) for p in needs.debian_packages),
                        timeout_s=900,
                    )
        if not needs.project:
            return "python3"
        from harness.backends import images

        # One virtualenv per dependency set (uploaded once per host); the
        # project's own wheel is reinstalled when its content hash changes.
        deps = images.deps_wheels()
        venv = f"{REMOTE_ROOT}/venv-{deps.name}"
        project_tag = images.project_hash()
        tmp = Path(tempfile.mkdtemp(prefix="squall-wheel-"))
        try:
            self._install_venv(venv, deps, project_tag, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return f"{venv}/bin/python"

    def _install_venv(self, venv: str, deps: Path, project_tag: str, tmp: Path) -> None:
        from harness.backends import images

        wheel: Path | None = None
        for n in self._nodes.values():
            rc, _ = n.host.run(f"test -f {venv}/.complete", check=False)
            if rc != 0:
                remote_deps = f"{REMOTE_ROOT}/{deps.name}"
                n.host.run(f"rm -rf {venv} && mkdir -p {remote_deps}")
                for w in sorted(deps.glob("*.whl")):
                    n.host.put(w, f"{remote_deps}/{w.name}")
                n.host.run(
                    f"python3 -m venv {venv} && {venv}/bin/pip install -q --no-index "
                    f"--disable-pip-version-check {remote_deps}/*.whl && rm -rf {remote_deps} "
                    f"&& touch {venv}/.complete",
                    timeout_s=900,
                )
            rc, _ = n.host.run(f"grep -qx {project_tag} {venv}/.project", check=False)
            if rc != 0:
                if wheel is None:
                    wheel = images.project_wheel(tmp)
                remote = f"{REMOTE_ROOT}/{wheel.name}"
                n.host.put(wheel, remote)
                n.host.run(
                    f"{venv}/bin/pip install -q --no-index --no-deps --force-reinstall "
                    f"--disable-pip-version-check {remote} && rm -f {remote} "
                    f"&& echo {project_tag} > {venv}/.project",
                    timeout_s=600,
                )

    def _prepare(self, n: _Node, addrs: dict[str, str], python: str) -> None:
        """The database's launch for a node on its host (its remote directory,
        every interface, named by its host name), uploaded there."""
        launch = self.db.prepare(
            NodeContext(
                name=n.name,
                index=n.index,
                nodes=tuple(self.nodes),
                dir=n.remote_dir,
                ports=container_ports(self.nodes, n.name, addrs),
                listen_host="0.0.0.0",
                host=n.host.host,
                python=python,
                local=False,
            )
        )
        n.argv, n.env = list(launch.argv), dict(launch.env)
        n.remote_log = f"{n.remote_dir}/{launch.log}"
        n.host.run(f"rm -rf {shlex.quote(n.remote_dir)} && mkdir -p {shlex.quote(n.remote_dir)}")
        for d in launch.dirs:
            n.host.run(f"mkdir -p {shlex.quote(f'{n.remote_dir}/{d}')}")
        for rel, text in launch.files.items():
            remote = f"{n.remote_dir}/{rel}"
            n.host.run(f"mkdir -p {shlex.quote(remote.rsplit('/', 1)[0])}")
            n.host.put_text(text, remote)

    def teardown(self) -> None:
        """Kill every node, remove the iptables chain and the run's remote
        directory, close connections. Idempotent; errors are collected."""
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
            errors = []
            for n in self._nodes.values():
                try:
                    n.host.run(signal_script(f"{n.remote_dir}/pid", "CONT"), check=False)
                    n.host.run(signal_script(f"{n.remote_dir}/pid", "KILL"), check=False)
                    n.host.run(
                        f"iptables -D INPUT -j {CHAIN} 2>/dev/null; iptables -F {CHAIN} 2>/dev/null; "
                        f"iptables -X {CHAIN} 2>/dev/null; rm -rf {REMOTE_ROOT}/{self.run_id}",
                        check=False,
                    )
                except SetupError as exc:
                    errors.append(str(exc))
            for h in self._hosts:
                h.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if errors:
            raise SetupError("ssh teardown incomplete: " + "; ".join(errors))

    def __enter__(self) -> SshCluster:
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
        return f"{self._node(node).ip}:{CLIENT_PORT}"

    def connect_string(self, nodes: list[str] | None = None) -> str:
        return ",".join(self.client_address(n) for n in (nodes or self.nodes))

    # --------------------------------------------------------------- health
    def node_status(self, node: str) -> NodeStatus:
        return self.db.status(self.client_address(node))

    def leader(self) -> str | None:
        return leader_of(self.db, statuses(self.db, self._addresses(), 0.5))

    def _addresses(self) -> dict[str, str]:
        return {n: self.client_address(n) for n in self.nodes}

    def is_running(self, node: str) -> bool:
        n = self._node(node)
        q = shlex.quote(f"{n.remote_dir}/pid")
        rc, _ = n.host.run(f"p=$(cat {q} 2>/dev/null) && kill -0 $p 2>/dev/null", check=False)
        return rc == 0

    def wait_ready(self, timeout_s: float) -> None:
        """Every node runs and serves, and (a Primary database) one leads."""
        wait_until_ready(
            self.db,
            self._addresses,
            timeout_s,
            check_running=self._check_running,
            check_every_s=2.0,
            poll_s=0.25,
            what="ssh cluster",
            where=f"{REMOTE_ROOT}/{self.run_id} on each host",
        )

    def _check_running(self) -> None:
        for name in self.nodes:
            if not self._node(name).paused and not self.is_running(name):
                n = self._node(name)
                self.collect_logs(self.run_dir / "logs")
                raise SetupError(
                    f"node {name} on ssh host {n.host.label} is not running; its log is "
                    f"{n.host.host}:{n.remote_log} (copied to {self.run_dir / 'logs'})"
                )

    def collect_logs(self, dest_dir: Path) -> list[Path]:
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for n in self._nodes.values():
            target = dest_dir / f"{n.name}.log"
            if n.remote_log and n.host._client is not None and n.host.get(n.remote_log, target):
                copied.append(target)
        return copied

    # --------------------------------------------------------------- faults
    def drop(self, src: str, dst: str) -> None:
        s, d = self._node(src), self._node(dst)
        d.host.run(shlex.join(drop_rule(s.ip)))

    def lossy(self, src: str, dst: str, probability: float) -> None:
        s, d = self._node(src), self._node(dst)
        d.host.run(shlex.join(drop_rule(s.ip, probability)))

    def heal(self) -> None:
        for n in self._nodes.values():
            n.host.run(f"iptables -F {CHAIN}")

    def pause(self, node: str) -> None:
        n = self._node(node)
        n.host.run(signal_script(f"{n.remote_dir}/pid", "STOP"))
        n.paused = True

    def resume(self, node: str) -> None:
        n = self._node(node)
        n.host.run(signal_script(f"{n.remote_dir}/pid", "CONT"))
        n.paused = False

    def kill(self, node: str) -> None:
        n = self._node(node)
        n.host.run(signal_script(f"{n.remote_dir}/pid", "CONT"), check=False)
        n.host.run(signal_script(f"{n.remote_dir}/pid", "KILL"))
        n.paused = False

    def start(self, node: str) -> None:
        with self._lock:
            if self._torn_down:
                raise SetupError("cluster was torn down; cannot start nodes")
            n = self._node(node)
            if n.paused:
                self.resume(node)
            if self.is_running(node):
                return
            n.host.run(start_script(n.remote_dir, n.argv, n.env, n.remote_log, f"{n.remote_dir}/pid"))


class SshBackend:
    """``create`` connects to every host (failing with the host's name and
    the reason), installs the database, uploads configs and starts it."""

    name = "ssh"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def create(self, spec: Any, db: Any, run_dir: Path) -> SshCluster:
        install_signal_handlers()
        opts = options_from(self.options)
        nodes = node_names(getattr(spec, "nodes", spec))
        if len(nodes) > len(opts.hosts):
            raise SetupError(
                f"{len(nodes)} nodes asked for but only {len(opts.hosts)} ssh hosts given "
                f"({', '.join(h for h, _ in opts.hosts)})"
            )
        hosts = [Host(h, p, opts) for h, p in opts.hosts[: len(nodes)]]
        cluster = SshCluster(db, nodes, hosts, Path(run_dir))
        try:
            cluster.launch()
        except BaseException:
            try:
                cluster.teardown()
            except SetupError:
                pass
            raise
        return cluster


def make(options: dict[str, Any] | None = None) -> SshBackend:
    return SshBackend(options)
