"""The node's admin HTTP server: a JSON admin API, Prometheus metrics and the web UI.

``start_admin(server, host, port, token)`` serves, on the node's own event
loop (aiohttp):

* ``/commands`` and ``/commands/<name>``: ZooKeeper's AdminServer commands,
  with its names, aliases and JSON keys (:mod:`node.admin.commands`), plus
  squall's ``ensemble``. Every answer is built from the server's
  ``admin_view()`` snapshot, the same one the four-letter words render, so
  asking never touches sessions or the tree.
* ``/metrics``: Prometheus text format through ``prometheus_client`` (a
  registry per admin server, no global state; only numbers the node really
  has: the shell's own counters and the hooks of ``node.metrics``).
* ``/api/tree``, ``/api/search`` and ``POST /api/tree/{create,set,delete}``:
  the tree browser's back end. **Every tree access is an ordinary ZooKeeper
  client request**: the admin server keeps a kazoo client connected to the
  node's own client port per credential set (anonymous, or each
  ``user:password`` digest a UI user supplies), so ACLs, versions, watches,
  durability and ordering are exactly those of any other client; nothing
  bypasses the request path.
* ``/ui/tree``, ``/ui/ensemble``, ``/ui/status``: the pages (templates and
  assets ship with the package; no CDN).

Security: bound to loopback, the API is open (like ZooKeeper's AdminServer on
localhost). Bound anywhere else, :func:`start_admin` refuses to start without
a token; with a token every request must carry it (``Authorization: Bearer``,
``X-Squall-Token``, or the cookie set by visiting ``/?token=...`` once).
Every state-changing request (POST) must carry the per-process CSRF token in
an ``X-Squall-CSRF`` header (pages get it from a ``<meta>`` tag) and, when the
browser sends an ``Origin``, it must be this server's own: a cross-site page
can neither read the token nor set the header.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, exposition, generate_latest
from prometheus_client.metrics_core import Metric

from node.admin import commands, four_letter
from node.metrics import NodeMetrics
from node.wire import protocol as P

log = logging.getLogger("squall.admin")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

COMMANDS = tuple(commands.COMMANDS)  # ZooKeeper's primary names (node.admin.commands); aliases resolve too
TOKEN_COOKIE = "squall_admin_token"
CSRF_HEADER = "X-Squall-CSRF"
DIGEST_HEADER = "X-Squall-Digest"
MAX_CLIENTS = 16  # kazoo clients kept per credential set (least recently used closed beyond this)
SEARCH_LIMIT_NODES = 20_000  # a search walks at most this many znodes
SEARCH_LIMIT_HITS = 200
LEADER_CHANGES_KEPT = 50
SAMPLE_INTERVAL_S = 1.0
MAX_BODY_BYTES = 2 * 1024 * 1024
KAZOO_TIMEOUT_S = 10.0
MAX_PENDING_TIMINGS = 100_000  # proposals awaiting their commit, for the write latency histogram


class AdminConfigError(ValueError):
    """The admin server cannot start with these settings; the message says what is allowed."""


# ---------------------------------------------------------------- pure helpers


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; any other name or address is 'beyond loopback'."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_is_loopback(host_header: str | None) -> bool:
    """The Host header's name (port stripped) is a loopback name or address."""
    if not host_header:
        return False
    name = host_header
    if name.startswith("["):
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":")[0]
    return is_loopback(name)


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token (raises AdminConfigError)."""
    if not is_loopback(host) and not token:
        raise AdminConfigError(
            f"refusing to serve the admin API on {host}: it is reachable beyond this machine and "
            f"anyone reaching it could edit the tree. Pass an admin token (--admin-token TOKEN) or bind "
            f"the admin port to 127.0.0.1 (the default).")


MIN_TOKEN_CHARS = 8


def check_admin_options(host: str, port: int, token: str | None) -> tuple[str, int, str | None]:
    """Validate ``--admin-host/--admin-port/--admin-token`` before anything starts; returns serve()'s tuple."""
    check_bind(host, token)
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise AdminConfigError(f"the admin token is too short: use at least {MIN_TOKEN_CHARS} characters")
    if not 0 <= port <= 65535:
        raise AdminConfigError(f"admin port {port} is out of range; allowed: 0 (any free port) .. 65535")
    return host, port, token or None


def describe_data(data: bytes | None) -> dict:
    """How the UI shows a znode's data: JSON pretty-printed, text, or a hex dump for binary."""
    if data is None:
        return {"kind": "null", "text": "", "size": 0}
    out: dict[str, Any] = {"size": len(data), "hex": data.hex()}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {**out, "kind": "binary", "text": hex_dump(data)}
    if any(ord(ch) < 32 and ch not in "\t\r\n" for ch in text):
        return {**out, "kind": "binary", "text": hex_dump(data)}
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"') or stripped in ("true", "false", "null"):
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            return {**out, "kind": "json", "text": text, "pretty": json.dumps(parsed, indent=2, sort_keys=False)}
    return {**out, "kind": "text", "text": text}


def hex_dump(data: bytes, width: int = 16) -> str:
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {chunk.hex(' '):<{width * 3}} {printable}")
    return "\n".join(lines)


PERM_LETTERS = (("r", 1), ("w", 2), ("c", 4), ("d", 8), ("a", 16))


def perms_text(perms: int) -> str:
    return "".join(letter for letter, bit in sorted(PERM_LETTERS, key=lambda p: "cdrwa".index(p[0]))
                   if perms & bit)


def parse_perms(text: str) -> int:
    bits = dict(PERM_LETTERS)
    total = 0
    for ch in text.lower():
        if ch not in bits:
            raise ValueError(f"permission {ch!r} is not one of c, d, r, w, a")
        total |= bits[ch]
    return total


def parse_acl_lines(text: str) -> list[tuple[str, str, int]]:
    """``scheme:id:perms`` per line (digest ids contain ':'; the perms are the last field).

    Empty text means world:anyone:cdrwa (ZooKeeper's OPEN_ACL_UNSAFE).
    """
    entries = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(":")
        if len(parts) < 3:
            raise ValueError(f"ACL line {lineno} {line!r}: expected scheme:id:perms, e.g. world:anyone:cdrwa, "
                             f"digest:user:HASH:cdrwa, auth::cdrwa, ip:10.0.0.1:r")
        scheme, ident, perms = parts[0], ":".join(parts[1:-1]), parts[-1]
        if scheme not in ("world", "digest", "auth", "ip"):
            raise ValueError(f"ACL line {lineno}: scheme {scheme!r} is not one of world, digest, auth, ip")
        entries.append((scheme, ident, parse_perms(perms)))
    return entries or [("world", "anyone", 31)]


def stat_dict(stat: Any) -> dict:
    """kazoo's ZnodeStat as JSON (zxids also in hex, as zkCli prints them)."""
    d = {
        "czxid": stat.czxid, "mzxid": stat.mzxid, "pzxid": stat.pzxid,
        "ctime": stat.ctime, "mtime": stat.mtime, "version": stat.version, "cversion": stat.cversion,
        "aversion": stat.aversion, "ephemeralOwner": stat.ephemeralOwner, "dataLength": stat.dataLength,
        "numChildren": stat.numChildren,
    }
    d["hex"] = {k: f"0x{d[k] & 0xFFFFFFFFFFFFFFFF:x}" for k in ("czxid", "mzxid", "pzxid", "ephemeralOwner")}
    return d


def normalize_path(path: str | None) -> str:
    """A znode path from a request; ZooKeeper's own validation runs in the client/server."""
    path = (path or "/").strip()
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def zxid_hex(zxid: int) -> str:
    return f"0x{zxid & 0xFFFFFFFFFFFFFFFF:x}"


# -- Prometheus exposition through prometheus_client


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


# generate_latest writes the classic text format 0.0.4; newer prometheus_client versions call it by this name
METRICS_CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", CONTENT_TYPE_LATEST)


class PromWriter:
    """Accumulates metric families as ``prometheus_client`` metrics, built from one admin view."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[str, dict, float]]) -> None:
        # prometheus_client names a counter family without its _total (it adds it back when rendering)
        base = name.removesuffix("_total") if kind == "counter" else name
        metric = Metric(base, help_text, kind)
        for suffix, labels, value in samples:
            metric.add_sample(name + suffix, {k: str(v) for k, v in labels.items()}, float(value))
        self.metrics.append(metric)

    def gauge(self, name: str, help_text: str, value: float, labels: dict | None = None) -> None:
        self.family(name, "gauge", help_text, [("", labels or {}, value)])

    def counter(self, name: str, help_text: str, value: float, labels: dict | None = None) -> None:
        self.family(name, "counter", help_text, [("", labels or {}, value)])


class ViewCollector:
    """A ``prometheus_client`` collector that builds every family from a fresh admin view when scraped.

    Each admin server owns a :class:`CollectorRegistry` holding one of these
    (no process-global registry: two nodes in one process never mix).
    """

    def __init__(self, families: Callable[[], list[Metric]]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families()


def new_registry(families: Callable[[], list[Metric]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ViewCollector(families))
    return registry


# ---------------------------------------------------------------- the ensemble view


@dataclass
class RoleTracker:
    """Remembers role and leader changes seen by the admin sampler (a pure state machine)."""

    last: tuple | None = None
    changes: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LEADER_CHANGES_KEPT))
    role_changes: int = 0

    def observe(self, wall_ms: int, role: str, leader: Any, epoch: int) -> None:
        key = (role, leader, epoch)
        if self.last is None:
            self.last = key
            self.changes.append({"time_ms": wall_ms, "role": role, "leader": leader, "epoch": epoch,
                                 "event": "started"})
            return
        if key != self.last:
            self.role_changes += 1
            self.changes.append({"time_ms": wall_ms, "role": role, "leader": leader, "epoch": epoch,
                                 "event": "changed", "previous": {"role": self.last[0], "leader": self.last[1],
                                                                  "epoch": self.last[2]}})
            self.last = key


def ensemble_view(server: Any, view: four_letter.AdminView) -> dict:
    """role, epoch, last zxid, the leader, and every peer's state and lag.

    ``server.ensemble_view()`` gives ``mode``, ``server_id``, ``epoch``,
    ``last_zxid``, ``leader`` and ``peers``: a list of dicts (``id``,
    ``address``, ``role``, ``state``, ``last_zxid``, ``sessions``,
    ``connections``); a standalone node is its own one-member ensemble.
    """
    raw = dict(server.ensemble_view())
    peers = [dict(p) for p in raw.get("peers", [])]
    leader_id = raw.get("leader")
    leader_zxid = next((p.get("last_zxid") for p in peers if p.get("id") == leader_id), None)
    for p in peers:
        z = p.get("last_zxid")
        p["self"] = p.get("id") == raw.get("server_id")
        if isinstance(z, int):
            p["last_zxid_hex"] = zxid_hex(z)
            p["epoch"] = z >> 32
        if isinstance(z, int) and isinstance(leader_zxid, int) and (z >> 32) == (leader_zxid >> 32):
            p["lag"] = max(0, leader_zxid - z)
        else:
            p["lag"] = None  # unknown, or a different epoch: counting txns across epochs means nothing
    last = raw.get("last_zxid", view.zxid)
    return {"mode": raw.get("mode", view.mode), "server_id": raw.get("server_id"), "epoch": raw.get("epoch"),
            "last_zxid": last, "last_zxid_hex": zxid_hex(last), "leader": leader_id, "peers": peers}


# ---------------------------------------------------------------- commands as JSON


def render_metrics(view: four_letter.AdminView, server: Any, inst: NodeMetrics | None, roles: RoleTracker,
                   http_counts: dict[tuple[str, int], int]) -> str:
    """Prometheus text (prometheus_client's exposition): only numbers the node has or that were measured here."""
    return generate_latest(new_registry(lambda: metric_families(view, server, inst, roles, http_counts))).decode()


def metric_families(view: four_letter.AdminView, server: Any, inst: NodeMetrics | None, roles: RoleTracker,
                    http_counts: dict[tuple[str, int], int]) -> list[Metric]:
    """Every metric family of ``/metrics``, from one admin view."""
    w = PromWriter()
    ens = ensemble_view(server, view)
    w.gauge("squall_info", "Constant 1; labels carry the version and the current role.", 1,
            {"version": four_letter.VERSION_LINE, "role": str(ens["mode"])})
    w.gauge("squall_up_seconds", "Seconds since the node's server started.", round(view.uptime_s, 3))
    w.gauge("squall_znodes", "Znodes in the tree (ZooKeeper's zk_znode_count).", view.node_count)
    w.gauge("squall_sessions", "Live sessions (global).", len(view.session_timeouts))
    w.gauge("squall_connections", "Open client connections.", len(view.connections))
    w.gauge("squall_watches", "Registered watches (all kinds).", view.watch_count)
    w.gauge("squall_watched_paths", "Distinct watched paths.", view.watched_paths)
    w.gauge("squall_ephemerals", "Ephemeral znodes.", view.ephemerals_count)
    w.gauge("squall_outstanding_requests", "Requests waiting for their reply.", view.outstanding)
    w.gauge("squall_last_zxid", "Newest applied zxid.", view.zxid)
    w.gauge("squall_epoch", "Current epoch (high 32 bits of the zxid).", view.zxid >> 32)
    w.counter("squall_packets_sent_total", "Packets sent to clients since start.", view.sent)
    w.counter("squall_fsyncs_total", "Write-ahead log fsyncs since start.", view.fsyncs)
    if inst is not None:
        names = sorted(inst.txns)
        w.family("squall_txns_total", "counter",
                 "Write transactions handed to the replica, by operation (failed ones such as a bad version "
                 "included).", [("", {"op": n}, inst.txns[n]) for n in names])
        samples = []
        for n in sorted(inst.write_latency):
            samples += inst.write_latency[n].samples({"op": n})
        w.family("squall_write_latency_seconds", "histogram",
                 "Write request latency inside the node: arrival until the reply is released, after the fsync "
                 "that made it durable.", samples)
        w.family("squall_fsync_latency_seconds", "histogram", "Duration of each write-ahead log write+fsync.",
                 inst.fsync.samples({}))
    stats = getattr(server, "request_stats", None)
    if stats:
        names = {op: P.OP_NAMES.get(op, str(op)) for op in list(stats)}
        ops = sorted(names, key=names.get)
        w.family("squall_requests_total", "counter", "Client requests received, by operation.",
                 [("", {"op": names[op]}, stats[op][0]) for op in ops])
        timed = [op for op in ops if stats[op][1] > 0]
        if timed:
            w.family("squall_request_handling_seconds", "summary",
                     "Time spent handling requests on the event loop, by operation (a read: until its "
                     "reply is queued; a write: until it is proposed).",
                     [sample for op in timed for sample in (("_sum", {"op": names[op]}, round(stats[op][1], 6)),
                                                            ("_count", {"op": names[op]}, stats[op][0]))])
    w.counter("squall_role_changes_total", "Role/leader/epoch changes seen by the admin sampler since start.",
              roles.role_changes)
    w.family("squall_admin_http_requests_total", "counter", "Admin HTTP requests served, by route and status.",
             [("", {"route": r, "status": str(s)}, n) for (r, s), n in sorted(http_counts.items())])
    return w.metrics


# ---------------------------------------------------------------- tree access through kazoo clients


class TreeError(Exception):
    """A tree operation failed; ``status`` is the HTTP status, the message is for the UI user."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ClientPool:
    """One kazoo client per credential set, connected to the node's own client port.

    Used only from worker threads (kazoo blocks); the pool's lock guards the
    map. Credentials are ``user:password`` digests; a client is created with
    them as ``auth_data`` so its requests carry exactly that identity.
    """

    def __init__(self, hosts: str, max_clients: int = MAX_CLIENTS) -> None:
        self.hosts = hosts
        self.max_clients = max_clients
        self._clients: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.closed = False

    def get(self, digests: tuple[str, ...]) -> Any:
        from kazoo.client import KazooClient  # imported late: the node itself does not need kazoo

        with self._lock:
            if self.closed:
                raise TreeError(503, "the admin server is shutting down", "closed")
            client = self._clients.get(digests)
            if client is not None:
                self._clients.move_to_end(digests)
                if client.connected:
                    return client
                self._clients.pop(digests)
                _stop_quietly(client)
            client = KazooClient(hosts=self.hosts, timeout=KAZOO_TIMEOUT_S,
                                 auth_data=[("digest", d) for d in digests], connection_retry=None)
            try:
                client.start(timeout=KAZOO_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - e.g. refused credentials or a stopped node
                _stop_quietly(client)
                raise TreeError(503, f"cannot open a client session on {self.hosts}: {exc}", "unavailable") from exc
            self._clients[digests] = client
            while len(self._clients) > self.max_clients:
                _, old = self._clients.popitem(last=False)
                _stop_quietly(old)
            return client

    def close(self) -> None:
        with self._lock:
            self.closed = True
            clients = list(self._clients.values())
            self._clients.clear()
        for c in clients:
            _stop_quietly(c)


def _stop_quietly(client: Any) -> None:
    try:
        client.stop()
        client.close()
    except Exception:  # noqa: BLE001
        pass


def run_tree_op(fn: Callable[[], Any]) -> Any:
    """Run a kazoo call; translate kazoo's errors into TreeError with a message for people."""
    from kazoo import exceptions as E
    try:
        return fn()
    except TreeError:
        raise
    except E.NoNodeError as exc:
        raise TreeError(404, f"no such znode{_path_of(exc)} (it may have been deleted meanwhile)", "no-node")
    except E.NodeExistsError as exc:
        raise TreeError(409, f"the znode already exists{_path_of(exc)}", "node-exists")
    except E.NotEmptyError:
        raise TreeError(409, "the znode has children: delete them first or tick 'recursive'", "not-empty")
    except E.NoAuthError:
        raise TreeError(403, "not authorised by the znode's ACL: supply digest credentials (user:password) "
                             "that the ACL grants this permission", "no-auth")
    except E.InvalidACLError:
        raise TreeError(400, "invalid ACL (an 'auth' entry needs digest credentials in this session)",
                        "invalid-acl")
    except E.NoChildrenForEphemeralsError:
        raise TreeError(400, "ephemeral znodes cannot have children", "ephemeral-parent")
    except E.BadArgumentsError as exc:
        raise TreeError(400, f"bad arguments: {exc}", "bad-arguments")
    except (ValueError, TypeError) as exc:
        raise TreeError(400, f"invalid request: {exc}", "bad-request")
    except E.ZookeeperError as exc:
        raise TreeError(502, f"the node answered {type(exc).__name__}: {exc}", "zookeeper-error")
    except E.KazooException as exc:
        raise TreeError(503, f"the client connection failed: {type(exc).__name__}: {exc}", "unavailable")


def _path_of(exc: Exception) -> str:
    return f": {exc.args[0]}" if exc.args and isinstance(exc.args[0], str) and exc.args[0].startswith("/") else ""


def _acl_dicts(acls: list) -> list[dict]:
    return [{"scheme": a.id.scheme, "id": a.id.id, "perms": perms_text(a.perms), "perms_bits": a.perms}
            for a in acls]


def read_znode(client: Any, path: str) -> dict:
    def op() -> dict:
        data, stat = client.get(path)
        acls, _ = client.get_acls(path)
        children = sorted(client.get_children(path))
        return {"path": path, "data": describe_data(data), "stat": stat_dict(stat), "acl": _acl_dicts(acls),
                "children": children}
    return run_tree_op(op)


def create_znode(client: Any, path: str, data: bytes, acl_text: str, ephemeral: bool, sequential: bool) -> dict:
    from kazoo.security import ACL, Id

    try:
        acls = [ACL(perms, Id(scheme, ident)) for scheme, ident, perms in parse_acl_lines(acl_text)]
    except ValueError as exc:
        raise TreeError(400, str(exc), "bad-acl") from exc
    created = run_tree_op(lambda: client.create(path, data, acl=acls, ephemeral=ephemeral, sequence=sequential))
    return read_znode(client, created)


def set_znode(client: Any, path: str, data: bytes, version: int) -> dict:
    """setData with the version the user loaded: a concurrent change makes it fail, with both versions named."""
    from kazoo import exceptions as E

    def op() -> None:
        try:
            client.set(path, data, version=version)
        except E.BadVersionError:
            try:
                _, now = client.get(path)
                current = f"it is now at version {now.version} (modified at zxid {zxid_hex(now.mzxid)})"
            except E.KazooException:
                current = "it has changed"
            raise TreeError(409, f"refused: the znode changed since you loaded it. You edited version {version}; "
                                 f"{current}. Reload it and apply your edit again.", "bad-version") from None
    run_tree_op(op)
    return read_znode(client, path)


def delete_znode(client: Any, path: str, version: int, recursive: bool) -> dict:
    if path == "/":
        raise TreeError(400, "the root znode cannot be deleted", "bad-request")
    if path == "/zookeeper" or path.startswith("/zookeeper/"):
        raise TreeError(400, "/zookeeper is ZooKeeper's own subtree and cannot be deleted", "bad-request")
    run_tree_op(lambda: _delete(client, path, version, recursive))
    return {"deleted": path, "recursive": recursive}


def _delete(client: Any, path: str, version: int, recursive: bool) -> None:
    from kazoo import exceptions as E

    def refused(now: int | None) -> TreeError:
        seen = f"version {now}" if now is not None else "a newer version"
        return TreeError(409, f"refused: the znode changed since you loaded it. You saw version {version}; it is "
                              f"now at {seen}. Reload it and decide again.", "bad-version")
    if recursive:
        # kazoo's recursive delete takes no version; check the top znode's first (the window between the
        # check and the delete is the same as for zkCli's deleteall).
        _, stat = client.get(path)
        if version != -1 and stat.version != version:
            raise refused(stat.version)
        client.delete(path, recursive=True)
        return
    try:
        client.delete(path, version=version)
    except E.BadVersionError:
        try:
            now = client.get(path)[1].version
        except E.KazooException:
            now = None
        raise refused(now) from None


def search_paths(client: Any, needle: str, root: str = "/") -> dict:
    """Paths containing ``needle`` (case-insensitive), breadth first, bounded in nodes and hits."""
    from kazoo import exceptions as E
    needle_l = needle.lower()
    hits: list[str] = []
    queue = collections.deque([root])
    visited = 0
    truncated = False
    while queue:
        path = queue.popleft()
        visited += 1
        if visited > SEARCH_LIMIT_NODES or len(hits) >= SEARCH_LIMIT_HITS:
            truncated = True
            break
        if needle_l in path.lower() and path != "/":
            hits.append(path)
        try:
            children = client.get_children(path)
        except (E.NoNodeError, E.NoAuthError):
            continue
        except E.KazooException as exc:
            raise TreeError(503, f"search failed: {exc}", "unavailable") from exc
        base = path.rstrip("/")
        queue.extend(f"{base}/{c}" for c in sorted(children))
    return {"query": needle, "hits": hits, "visited": visited, "truncated": truncated}


# ---------------------------------------------------------------- the aiohttp application


@dataclass
class AdminRunner:
    """A started admin server: ``url``, ``host``, ``port``; ``await close()`` stops it."""

    host: str
    port: int
    runner: web.AppRunner
    app: web.Application

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


class AdminApp:
    """Request handlers; one per admin server."""

    def __init__(self, server: Any, client_hosts: str, token: str | None) -> None:
        self.server = server
        self.token = token
        self.csrf = secrets.token_urlsafe(24)
        self.pool = ClientPool(client_hosts)
        self.node_metrics: NodeMetrics | None = getattr(server, "metrics", None)  # the node's own hooks
        self.roles = RoleTracker()
        self.http_counts: dict[tuple[str, int], int] = collections.Counter()
        # this admin server's own registry: scraping builds the families from a fresh admin view
        self.registry = new_registry(lambda: metric_families(self.server.admin_view(), self.server, self.node_metrics,
                                                             self.roles, self.http_counts))
        self.env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
        self._sampler: asyncio.Task | None = None

    # -- lifecycle

    async def on_startup(self, app: web.Application) -> None:
        self._sample()
        self._sampler = asyncio.create_task(self._sample_forever())

    async def on_cleanup(self, app: web.Application) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.pool.close)

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            try:
                self._sample()
            except Exception:  # noqa: BLE001 - a sampling hiccup must not stop the admin server
                log.exception("admin role sampler failed; continuing")

    def _sample(self) -> None:
        ens = ensemble_view(self.server, self.server.admin_view())
        self.roles.observe(int(time.time() * 1000), str(ens["mode"]), ens["leader"], ens["epoch"] or 0)

    # -- middleware: token, CSRF, counting, errors

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        status = 500
        try:
            if self.token is not None:
                login = request.query.get("token")
                if login is not None and request.method == "GET":
                    if not hmac.compare_digest(login.encode(), self.token.encode()):
                        raise _json_error(401, "wrong admin token", "bad-token")
                    resp = web.HTTPFound(str(request.rel_url.without_query_params("token")))
                    resp.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
                    raise resp
                if not self._token_ok(request):
                    raise _json_error(401, "this admin server requires its token: send 'Authorization: Bearer "
                                           "TOKEN' or open /?token=TOKEN once in the browser", "token-required")
            elif not host_is_loopback(request.host):
                # Without a token the server is bound to loopback; a non-loopback Host header then means a
                # page on another site reached us through DNS rebinding.
                raise _json_error(403, f"Host {request.host!r} refused: without an admin token only loopback "
                                       f"names (localhost, 127.0.0.1, [::1]) are served", "bad-host")
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                self._check_csrf(request)
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception:
            log.exception("admin request %s %s failed", request.method, request.path)
            status = 500
            return web.json_response({"error": "internal error in the admin server (see the node's log)",
                                      "code": "internal"}, status=500)
        finally:
            self.http_counts[(route, status)] += 1

    def _token_ok(self, request: web.Request) -> bool:
        assert self.token is not None
        offered = request.headers.get("X-Squall-Token") or request.cookies.get(TOKEN_COOKIE) or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered = auth[7:]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _check_csrf(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin and origin != "null":
            expected = f"{request.scheme}://{request.host}"
            if origin != expected:
                raise _json_error(403, f"cross-site request refused: Origin {origin} is not {expected}",
                                  "csrf-origin")
        offered = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(offered.encode(), self.csrf.encode()):
            raise _json_error(403, f"missing or wrong {CSRF_HEADER} header: state-changing requests must carry "
                                   f"the CSRF token (GET /api/csrf or the page's meta tag)", "csrf-token")

    # -- JSON API

    async def commands(self, request: web.Request) -> web.Response:
        base = str(request.url.with_path("/commands").with_query(None))
        return web.json_response({"commands": [{"name": c, "url": f"{base}/{c}"} for c in COMMANDS],
                                  "metrics": str(request.url.with_path("/metrics").with_query(None)),
                                  "error": None})

    async def command(self, request: web.Request) -> web.Response:
        asked = request.match_info["name"]
        name = commands.resolve(asked)
        if name is None:  # ZooKeeper's error text, plus what is allowed
            return web.json_response({"command": asked, "error": f"Unknown command: {asked}; known: "
                                      f"{', '.join(COMMANDS)} (and their aliases)"}, status=404)
        view = self.server.admin_view()
        body = commands.command_json(name, view, self.server, lambda: ensemble_view(self.server, view))
        if name == "ensemble":
            body["leader_changes"] = list(self.roles.changes)
        return web.json_response(body)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": METRICS_CONTENT_TYPE, "X-Content-Type-Options": "nosniff"})

    async def csrf_token(self, request: web.Request) -> web.Response:
        return web.json_response({"csrf": self.csrf, "header": CSRF_HEADER})

    def _digests(self, request: web.Request, body: dict | None = None) -> tuple[str, ...]:
        raw = request.headers.get(DIGEST_HEADER, "") or (body or {}).get("auth", "") or ""
        digests = tuple(sorted({d.strip() for d in raw.split(",") if d.strip()}))
        for d in digests:
            if ":" not in d:
                raise _json_error(400, f"credentials {d.split(':')[0]!r}...: expected user:password", "bad-auth")
        return digests

    async def _in_thread(self, request: web.Request, digests: tuple[str, ...], fn: Callable[[Any], Any]) -> Any:
        def work() -> Any:
            client = self.pool.get(digests)
            return fn(client)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, work)
        except TreeError as exc:
            raise _json_error(exc.status, str(exc), exc.code) from None

    async def tree_get(self, request: web.Request) -> web.Response:
        path = normalize_path(request.query.get("path"))
        result = await self._in_thread(request, self._digests(request), lambda c: read_znode(c, path))
        return web.json_response(result)

    async def tree_search(self, request: web.Request) -> web.Response:
        needle = request.query.get("q", "").strip()
        if not needle:
            raise _json_error(400, "search needs ?q=TEXT (a part of a path)", "bad-request")
        result = await self._in_thread(request, self._digests(request), lambda c: search_paths(c, needle))
        return web.json_response(result)

    async def _body(self, request: web.Request) -> dict:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise _json_error(413, f"request body over {MAX_BODY_BYTES} bytes", "too-large")
        try:
            body = await request.json()
        except ValueError:
            raise _json_error(400, "the body must be a JSON object", "bad-request") from None
        if not isinstance(body, dict):
            raise _json_error(400, "the body must be a JSON object", "bad-request")
        return body

    @staticmethod
    def _data(body: dict) -> bytes:
        data = body.get("data", "")
        if not isinstance(data, str):
            raise _json_error(400, "data must be a string", "bad-request")
        if body.get("encoding", "text") == "hex":
            try:
                return bytes.fromhex("".join(data.split()))
            except ValueError:
                raise _json_error(400, "data is not valid hex (pairs of 0-9a-f)", "bad-request") from None
        return data.encode("utf-8")

    @staticmethod
    def _version(body: dict, default: int | None = None) -> int:
        v = body.get("version", default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _json_error(400, "version must be an integer: the version you loaded (-1 = any version)",
                              "bad-request")
        return v

    async def tree_create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        path = normalize_path(body.get("path"))
        data = self._data(body)
        acl = body.get("acl", "") or ""
        eph, seq = bool(body.get("ephemeral")), bool(body.get("sequential"))
        result = await self._in_thread(request, self._digests(request, body),
                                       lambda c: create_znode(c, path, data, acl, eph, seq))
        return web.json_response(result, status=201)

    async def tree_set(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        path = normalize_path(body.get("path"))
        data = self._data(body)
        version = self._version(body)
        result = await self._in_thread(request, self._digests(request, body),
                                       lambda c: set_znode(c, path, data, version))
        return web.json_response(result)

    async def tree_delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        path = normalize_path(body.get("path"))
        version = self._version(body, -1)
        recursive = bool(body.get("recursive"))
        result = await self._in_thread(request, self._digests(request, body),
                                       lambda c: delete_znode(c, path, version, recursive))
        return web.json_response(result)

    # -- pages

    def _page(self, template: str, **ctx: Any) -> web.Response:
        html = self.env.get_template(template).render(csrf=self.csrf, version=four_letter.VERSION_LINE, **ctx)
        return web.Response(text=html, content_type="text/html", charset="utf-8",
                            headers={"X-Frame-Options": "DENY", "Content-Security-Policy":
                                     "default-src 'self'; frame-ancestors 'none'"})

    async def index(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/tree")

    async def ui_tree(self, request: web.Request) -> web.Response:
        return self._page("tree.html", page="tree")

    async def ui_ensemble(self, request: web.Request) -> web.Response:
        return self._page("ensemble.html", page="ensemble")

    async def ui_status(self, request: web.Request) -> web.Response:
        return self._page("status.html", page="status", commands=COMMANDS)


def _json_error(status: int, message: str, code: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
           409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge, 502: web.HTTPBadGateway,
           503: web.HTTPServiceUnavailable}.get(status, web.HTTPInternalServerError)
    return cls(text=json.dumps({"error": message, "code": code}), content_type="application/json")


ADMIN_KEY = web.AppKey("admin", AdminApp)


def build_app(server: Any, client_hosts: str, token: str | None = None) -> web.Application:
    admin = AdminApp(server, client_hosts, token)
    app = web.Application(middlewares=[admin.middleware], client_max_size=MAX_BODY_BYTES)
    app[ADMIN_KEY] = admin
    r = app.router
    r.add_get("/", admin.index)
    r.add_get("/commands", admin.commands)
    r.add_get("/commands/{name}", admin.command)
    r.add_get("/metrics", admin.metrics)
    r.add_get("/api/csrf", admin.csrf_token)
    r.add_get("/api/tree", admin.tree_get)
    r.add_get("/api/search", admin.tree_search)
    r.add_post("/api/tree/create", admin.tree_create)
    r.add_post("/api/tree/set", admin.tree_set)
    r.add_post("/api/tree/delete", admin.tree_delete)
    r.add_get("/ui/tree", admin.ui_tree)
    r.add_get("/ui/ensemble", admin.ui_ensemble)
    r.add_get("/ui/status", admin.ui_status)
    r.add_static("/static/", str(STATIC), follow_symlinks=False)
    app.on_startup.append(admin.on_startup)
    app.on_cleanup.append(admin.on_cleanup)
    return app


def _client_hosts(server: Any) -> str:
    """Where the admin's own kazoo clients connect: the node's bound client port (loopback for 0.0.0.0)."""
    host, port = None, None
    srv = getattr(server, "_server", None)
    sockets = getattr(srv, "sockets", None) or []
    if sockets:
        host, port = sockets[0].getsockname()[:2]
    cfg = getattr(server, "cfg", None)
    host = host or getattr(cfg, "host", "127.0.0.1")
    port = port or getattr(cfg, "port", 2181)
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


async def start_admin(server: Any, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                      client_hosts: str | None = None) -> AdminRunner:
    """Serve the admin API and web UI for ``server`` (a started ``node.server.MemberServer``) on host:port (0 = any free port).

    Call it on the node's event loop after ``server.start()``. Raises
    :class:`AdminConfigError` for a non-loopback ``host`` without ``token``
    (before binding anything) and ``OSError`` when the port is taken.
    """
    check_admin_options(host, port, token)
    app = build_app(server, client_hosts or _client_hosts(server), token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = site._server.sockets[0].getsockname() if site._server and site._server.sockets else (host, port)
    admin = AdminRunner(bound[0], bound[1], runner, app)
    log.info("admin HTTP serving on %s (token %s)", admin.url, "required" if token else "not required: loopback")
    return admin
