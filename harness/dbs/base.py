"""The database protocol: the seam between the harness and a database under test.

A database (``DB``) says, for one node:

- how to start it: ``prepare(NodeContext) -> NodeLaunch`` (argv, environment,
  files to write in the node's directory, the log file). The backend owns the
  process (start, signals, logs) and writes the files where the node runs
  (this machine, a container, an SSH host); it never reads them;
- whether it serves and what it is: ``status(address) -> NodeStatus`` (role,
  term or epoch, last applied index or zxid). No backend parses a database's
  wire format or its output: every backend waits with ``wait_until_ready``
  and finds the leader with ``leader_of``, both defined here on statuses;
- which client interfaces it offers to workloads: ``interfaces`` and
  ``clients(interface, settings)`` (``workloads.base.ClientFactory``). A
  workload names the interface it needs (``workloads/interfaces.py``), so the
  same workload runs on every database that offers it; ``bind`` joins the two
  into what the runner drives.

Options and test-only faults reach the database through its factory
(``make(options)``) and from there through ``prepare`` (the node's argv, env
or files), never through the harness's own environment.

Optional abilities are separate protocols, as Jepsen's Kill/Pause/Primary:

- ``Primary``: one node leads at a time and its status says so. Readiness then
  requires exactly one node claiming leadership (an isolated old leader claims
  it for a while), and nemeses may aim at "the leader".
- ``Snapshots``: one node's copy of the workload's data can be read from that
  node alone; the runner's converge phase compares the copies after healing.
- ``UnsafeFaults``: deliberately broken variants (``--unsafe-db-fault``), armed
  only when asked for, to prove the checkers catch them.
- ``Installs``: what a host must have for the node to run (Debian packages,
  the squall distribution itself), for the SSH and Docker backends.

``DBBase`` gives a plugin the defaults (a database class may subclass it and
override what it needs); ``docs/extending.md`` walks through writing one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.backends.base import SetupError as SetupError  # databases raise the backends' SetupError
from workloads.base import Client, ClientFactory

SERVING_ROLES = ("leader", "follower", "standalone", "observer", "learner", "serving")
LEADER_ROLES = ("leader", "standalone")


class NotOffered(Exception):
    """A database does not offer the client interface a workload needs."""


# ----------------------------------------------------------------- one node


@dataclass(frozen=True)
class NodePorts:
    """The ports of one node. ``client``/``peer``/``election`` are its own
    listening ports (``election`` only matters to a database whose
    ``peer_kinds`` name it); ``peer_addresses`` maps every OTHER node to the
    (host, peer port, election port) this node must dial to reach it: on the
    local backend a proxy dedicated to the link, so partitions can cut it."""

    client: int
    peer: int
    election: int
    peer_addresses: dict[str, tuple[str, int, int]]
    client_ports: dict[str, int] = field(default_factory=dict)  # every node's client port


@dataclass(frozen=True)
class NodeContext:
    """What a backend tells a database about one node it is about to start.

    ``dir`` is the node's directory as the node's process sees it (on an SSH
    host, the remote directory): the launch's files are written there, the
    process runs there, and a database keeps its durable state under
    ``<dir>/data`` (the ``disk`` fault mounts that directory). ``listen_host``
    is the address to bind (127.0.0.1 locally, 0.0.0.0 in a container or on
    a host of its own); ``host`` is how the other nodes name this node's host
    (its own peer-list entry); ``python`` is an interpreter with the squall
    distribution installed where the node runs; ``local`` says the node runs
    on this machine, so files and programs here are the node's own (a
    database may check them in ``prepare``)."""

    name: str
    index: int  # 1-based position in ``nodes`` (ZooKeeper's myid)
    nodes: tuple[str, ...]
    dir: str
    ports: NodePorts
    listen_host: str = "127.0.0.1"
    host: str = "127.0.0.1"
    python: str = "python3"
    local: bool = True

    def path(self, *parts: str) -> str:
        """A path under the node's directory, as the node sees it."""
        return str(Path(self.dir, *parts))


@dataclass(frozen=True)
class NodeLaunch:
    """How to start a node: ``argv`` with ``env`` added to the environment,
    in the node's directory; ``files`` (path relative to the node's directory
    -> text) are written before the first start and ``dirs`` created;
    ``log`` is the file (relative to the node's directory) that gets the
    process's stdout and stderr."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    log: str = "node.log"

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise SetupError(f"a node's argv must be a non-empty list of strings, got {self.argv!r}")
        for rel in [*self.files, *self.dirs, self.log]:
            p = Path(rel)
            if p.is_absolute() or ".." in p.parts or not p.parts:
                raise SetupError(f"launch path {rel!r} must be relative to the node's directory, without '..'")


def write_launch_files(node_dir: Path, launch: NodeLaunch) -> None:
    """Create ``launch``'s dirs and files under ``node_dir`` (a local path)."""
    for d in launch.dirs:
        (node_dir / d).mkdir(parents=True, exist_ok=True)
    for rel, text in launch.files.items():
        target = node_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@dataclass(frozen=True)
class NodeStatus:
    """One node's answer to "what are you?".

    ``role``: leader, follower, standalone, observer, learner, serving (a
    leaderless member), candidate, not-serving or down. ``serving``: it
    answers clients. ``term``: the leader's term or epoch it follows;
    ``applied``: its last applied log index (ZooKeeper: the zxid).
    ``details``: what else the database reported (for diagnosis only)."""

    role: str
    serving: bool = False
    term: int | None = None
    applied: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def down(cls, why: str = "") -> NodeStatus:
        return cls("down", False, details={"error": why} if why else {})

    @property
    def claims_leadership(self) -> bool:
        return self.role in LEADER_ROLES

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "serving": self.serving,
            "term": self.term,
            "applied": self.applied,
            **({"details": dict(self.details)} if self.details else {}),
        }


# ------------------------------------------------------------ the protocol


@runtime_checkable
class DB(Protocol):
    """A database under test (see the module doc)."""

    name: str
    # The peer port kinds each node listens on besides its client port:
    # ("peer",), or ("peer", "election") for ZooKeeper's two quorum ports.
    # The local backend puts one proxy per directed link and kind.
    peer_kinds: tuple[str, ...]
    # The client interfaces this database offers workloads (workloads/interfaces.py).
    interfaces: tuple[str, ...]

    def supported_node_counts(self) -> tuple[int, ...]:
        """The cluster sizes this database runs; ``--nodes`` is checked first."""

    def default_node_count(self) -> int:
        """The node count when ``--nodes`` is not given."""

    def prepare(self, node: NodeContext) -> NodeLaunch:
        """How to start ``node`` (raise ``SetupError`` saying why it cannot)."""

    def status(self, address: str, timeout_s: float = 1.0) -> NodeStatus:
        """Ask the node at "host:port" (its client address); never raises:
        an unreachable node is ``NodeStatus.down(why)``."""

    def clients(self, interface: str, settings: Mapping[str, Any]) -> ClientFactory:
        """Clients for ``interface`` with the workload's ``settings``; raise
        ``NotOffered`` for an interface not in ``interfaces``."""


@runtime_checkable
class Primary(Protocol):
    """Optional: one node leads at a time, and ``status`` says which."""

    def claims_leadership(self, status: NodeStatus) -> bool:
        """Does this status claim leadership (``status.claims_leadership`` by default)?"""


@runtime_checkable
class Snapshots(Protocol):
    """Optional: read one node's copy of a workload's data from that node alone."""

    def snapshot(self, address: str, paths: tuple[str, ...], timeout_s: float = 10.0) -> dict[str, Any]:
        """``{"sync_zxid": applied position or None, "paths": {path: [data,
        version, modified-at]}}`` for ``paths`` and everything under them, as
        the node at ``address`` holds them (``checkers.convergence``); raises
        when the node cannot be read."""


@runtime_checkable
class UnsafeFaults(Protocol):
    """Optional: TEST ONLY, deliberately broken variants, for proving the gate fails.

    ``unsafe_faults`` names them; the factory gets the chosen one as the option
    ``unsafe_db_fault`` and arms it through ``prepare`` (or its clients)."""

    unsafe_faults: tuple[str, ...]


@runtime_checkable
class PeerSockets(Protocol):
    """Optional: members name every peer by the same address (etcd derives
    member ids from its peer URLs), so on the local backend they dial Unix
    sockets named relative to their own directory: ``peer_socket(node)`` is
    the file name of ``node``'s socket. The member listens on it in its own
    directory; in every other member's directory the local backend's proxy
    for the link to it listens under that name (harness/backends/proxy.py).
    Backends that give every member a host of its own ignore it."""

    def peer_socket(self, node: str) -> str: ...


@dataclass(frozen=True)
class HostNeeds:
    """What a host needs for a node to run: Debian packages (installed with
    apt-get when ``probe``, a shell command, fails), and whether the node runs
    from the squall distribution (``project``: the backend installs it and
    passes its interpreter as ``NodeContext.python``)."""

    debian_packages: tuple[str, ...] = ()
    probe: str = ""
    project: bool = False


@runtime_checkable
class Installs(Protocol):
    """Optional: what hosts (SSH hosts, the node image) must have."""

    def host_needs(self) -> HostNeeds: ...


class DBBase:
    """Defaults for a database class: subclass it and set ``name``,
    ``interfaces`` and implement ``prepare``, ``status`` and ``clients``."""

    name = "db"
    peer_kinds: tuple[str, ...] = ("peer",)
    interfaces: tuple[str, ...] = ()

    def supported_node_counts(self) -> tuple[int, ...]:
        return tuple(range(1, 10))

    def default_node_count(self) -> int:
        return 3

    def not_offered(self, interface: str) -> NotOffered:
        offered = ", ".join(self.interfaces) or "none"
        return NotOffered(f"--db {self.name} offers no {interface!r} client (it offers: {offered})")


def offers(db: Any, interface: str) -> bool:
    return interface in tuple(db.interfaces)


def claims_leadership(db: Any, status: NodeStatus) -> bool:
    if not isinstance(db, Primary):
        return False
    return bool(db.claims_leadership(status))


# ------------------------------------------------- readiness and the leader


def statuses(db: Any, addresses: Mapping[str, str], timeout_s: float = 1.0) -> dict[str, NodeStatus]:
    """Every node's status (name -> NodeStatus), asked one after the other."""
    out = {}
    for node, address in addresses.items():
        try:
            out[node] = db.status(address, timeout_s)
        except Exception as exc:  # noqa: BLE001 - a database's status must not crash the harness
            out[node] = NodeStatus.down(f"{type(exc).__name__}: {exc}")
    return out


def leader_of(db: Any, found: Mapping[str, NodeStatus]) -> str | None:
    """The leader among ``found``: of the nodes claiming leadership, the one
    in the newest term with the most applied (an old leader cut off by a
    partition still claims it for a while). None for a database without
    ``Primary``, or when no node claims it."""
    best: tuple[int, int, str] | None = None
    for node, st in found.items():
        if st.serving and claims_leadership(db, st):
            key = (st.term or 0, st.applied or 0, node)
            if best is None or key[:2] > best[:2]:
                best = key
    return None if best is None else best[2]


def wait_until_ready(
    db: Any,
    addresses: Callable[[], Mapping[str, str]],
    timeout_s: float,
    *,
    check_running: Callable[[], None] = lambda: None,
    check_every_s: float = 0.0,
    where: str = "",
    what: str = "cluster",
    poll_s: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, NodeStatus]:
    """Block until every node serves and, for a ``Primary`` database, exactly
    one claims leadership; returns the statuses. The one wait-until-ready of
    every backend.

    ``check_running`` raises ``SetupError`` when a node's process is gone (it
    is called at most every ``check_every_s`` seconds: asking a container is
    not free). On timeout, ``SetupError`` says which nodes did not serve (and
    what they said) or who claimed leadership, and ``where`` the logs are."""
    deadline = clock() + timeout_s
    last_check: float | None = None
    primary = isinstance(db, Primary)
    while True:
        now = clock()
        if last_check is None or now - last_check >= check_every_s:
            last_check = now
            check_running()
        found = statuses(db, addresses())
        waiting = [n for n, st in found.items() if not st.serving]
        leaders = [n for n, st in found.items() if claims_leadership(db, st)] if not waiting else []
        if not waiting and (not primary or len(leaders) == 1):
            return found
        if clock() >= deadline:
            if waiting:
                said = ", ".join(
                    f"{n}: {found[n].role}"
                    + (f" ({found[n].details['error']})" if found[n].details.get("error") else "")
                    for n in waiting
                )
                problem = f"nodes {waiting} did not answer as serving ({said})"
            else:
                problem = f"expected one leader, nodes claiming it: {leaders}"
            raise SetupError(
                f"{what} not ready after {timeout_s:.0f}s: {problem}"
                + (f"; node logs are under {where}" if where else "")
            )
        sleep(poll_s)


# ------------------------------------------------- a workload on a database


class BoundWorkload:
    """A workload (op source and checker) joined to a database's clients for
    the interface it needs: what the runner drives. ``setup`` and ``client``
    are the database's; ``converge_paths`` and ``snapshot`` the database's
    when it offers ``Snapshots``; everything else is the workload's."""

    def __init__(self, workload: Any, db: Any, clients: ClientFactory) -> None:
        self.workload = workload
        self.db = db
        self.clients = clients
        paths = tuple(getattr(clients, "converge_paths", ()) or ())
        self.converge_paths: tuple[str, ...] = paths if isinstance(db, Snapshots) else ()

    def __getattr__(self, name: str) -> Any:  # ops, final_ops, check, name, progress_kinds, ...
        if name in ("workload", "db", "clients"):
            raise AttributeError(name)
        return getattr(self.workload, name)

    def setup(self, hosts: str) -> None:
        self.clients.setup(hosts)

    def client(self) -> Client:
        return self.clients.client()

    def snapshot(self, address: str, timeout_s: float = 10.0) -> dict[str, Any]:
        if not self.converge_paths:
            raise RuntimeError(f"--db {self.db.name} reads no node's copy of the {self.workload.name} workload's data")
        return self.db.snapshot(address, self.converge_paths, timeout_s)


def bind(workload: Any, db: Any) -> Any:
    """The workload ready to run on ``db``: a workload that names an
    ``interface`` gets the database's clients for it (``NotOffered`` when the
    database has none); one that brings its own clients (``client()`` and
    ``setup()``, as the tests' fakes) is returned as it is."""
    interface = getattr(workload, "interface", None)
    if interface is None:
        return workload
    if not isinstance(db, DB) or not offers(db, interface):
        name = getattr(db, "name", type(db).__name__)
        offered = ", ".join(getattr(db, "interfaces", ())) or "none"
        raise NotOffered(
            f"--db {name} cannot serve the {workload.name} workload: it offers no "
            f"{interface!r} client (it offers: {offered})"
        )
    settings = workload.client_settings() if hasattr(workload, "client_settings") else {}
    return BoundWorkload(workload, db, db.clients(interface, settings))
