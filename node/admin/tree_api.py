"""The tree browser's back end: znode reads, edits and searches through ordinary kazoo clients.

**Every tree access is an ordinary ZooKeeper client request**: the admin
server keeps a kazoo client connected to the node's own client port per
credential set (anonymous, or each ``user:password`` digest a UI user
supplies; :class:`ClientPool`), so ACLs, versions, watches, durability and
ordering are exactly those of any other client; nothing bypasses the request
path. The functions here run in worker threads (kazoo blocks) and raise
:class:`TreeError` with the HTTP status and a message for the UI user.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from typing import Any

MAX_CLIENTS = 16  # kazoo clients kept per credential set (least recently used closed beyond this)
SEARCH_LIMIT_NODES = 20_000  # a search walks at most this many znodes
SEARCH_LIMIT_HITS = 200
KAZOO_TIMEOUT_S = 10.0


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
        chunk = data[off : off + width]
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {chunk.hex(' '):<{width * 3}} {printable}")
    return "\n".join(lines)


PERM_LETTERS = (("r", 1), ("w", 2), ("c", 4), ("d", 8), ("a", 16))


def perms_text(perms: int) -> str:
    return "".join(letter for letter, bit in sorted(PERM_LETTERS, key=lambda p: "cdrwa".index(p[0])) if perms & bit)


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
            raise ValueError(
                f"ACL line {lineno} {line!r}: expected scheme:id:perms, e.g. world:anyone:cdrwa, "
                f"digest:user:HASH:cdrwa, auth::cdrwa, ip:10.0.0.1:r"
            )
        scheme, ident, perms = parts[0], ":".join(parts[1:-1]), parts[-1]
        if scheme not in ("world", "digest", "auth", "ip"):
            raise ValueError(f"ACL line {lineno}: scheme {scheme!r} is not one of world, digest, auth, ip")
        entries.append((scheme, ident, parse_perms(perms)))
    return entries or [("world", "anyone", 31)]


def stat_dict(stat: Any) -> dict:
    """kazoo's ZnodeStat as JSON (zxids also in hex, as zkCli prints them)."""
    d = {
        "czxid": stat.czxid,
        "mzxid": stat.mzxid,
        "pzxid": stat.pzxid,
        "ctime": stat.ctime,
        "mtime": stat.mtime,
        "version": stat.version,
        "cversion": stat.cversion,
        "aversion": stat.aversion,
        "ephemeralOwner": stat.ephemeralOwner,
        "dataLength": stat.dataLength,
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
            client = KazooClient(
                hosts=self.hosts,
                timeout=KAZOO_TIMEOUT_S,
                auth_data=[("digest", d) for d in digests],
                connection_retry=None,
            )
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
        raise TreeError(404, f"no such znode{_path_of(exc)} (it may have been deleted meanwhile)", "no-node") from None
    except E.NodeExistsError as exc:
        raise TreeError(409, f"the znode already exists{_path_of(exc)}", "node-exists") from None
    except E.NotEmptyError:
        raise TreeError(409, "the znode has children: delete them first or tick 'recursive'", "not-empty") from None
    except E.NoAuthError:
        raise TreeError(
            403,
            "not authorised by the znode's ACL: supply digest credentials (user:password) "
            "that the ACL grants this permission",
            "no-auth",
        ) from None
    except E.InvalidACLError:
        raise TreeError(
            400, "invalid ACL (an 'auth' entry needs digest credentials in this session)", "invalid-acl"
        ) from None
    except E.NoChildrenForEphemeralsError:
        raise TreeError(400, "ephemeral znodes cannot have children", "ephemeral-parent") from None
    except E.BadArgumentsError as exc:
        raise TreeError(400, f"bad arguments: {exc}", "bad-arguments") from None
    except (ValueError, TypeError) as exc:
        raise TreeError(400, f"invalid request: {exc}", "bad-request") from None
    except E.ZookeeperError as exc:
        raise TreeError(502, f"the node answered {type(exc).__name__}: {exc}", "zookeeper-error") from None
    except E.KazooException as exc:
        raise TreeError(503, f"the client connection failed: {type(exc).__name__}: {exc}", "unavailable") from None


def _path_of(exc: Exception) -> str:
    return f": {exc.args[0]}" if exc.args and isinstance(exc.args[0], str) and exc.args[0].startswith("/") else ""


def _acl_dicts(acls: list) -> list[dict]:
    return [{"scheme": a.id.scheme, "id": a.id.id, "perms": perms_text(a.perms), "perms_bits": a.perms} for a in acls]


def read_znode(client: Any, path: str) -> dict:
    def op() -> dict:
        data, stat = client.get(path)
        acls, _ = client.get_acls(path)
        children = sorted(client.get_children(path))
        return {
            "path": path,
            "data": describe_data(data),
            "stat": stat_dict(stat),
            "acl": _acl_dicts(acls),
            "children": children,
        }

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
            raise TreeError(
                409,
                f"refused: the znode changed since you loaded it. You edited version {version}; "
                f"{current}. Reload it and apply your edit again.",
                "bad-version",
            ) from None

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
        return TreeError(
            409,
            f"refused: the znode changed since you loaded it. You saw version {version}; it is "
            f"now at {seen}. Reload it and decide again.",
            "bad-version",
        )

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
