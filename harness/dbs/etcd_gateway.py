"""etcd's v3 API through its JSON gateway (``POST /v3/...``), over ``requests``.

Why not a Python etcd client library (checked on Python 3.11 with the
grpcio/protobuf versions pip installs today): ``etcd3`` (python-etcd3,
unmaintained since 2020) does not import with protobuf 4 and later (its
generated code is too old; only the slow pure-Python protobuf fallback works);
``aetcd`` installs (grpcio) but is asyncio-only, while the harness's clients
are threads with one call in flight each; ``etcd3gw`` (maintained, pure
Python) installs cleanly but its calls drop the response header -- the
revision every history op records -- and its watch swallows stream errors and
cannot be bounded in time or resumed from a known revision. etcd 3.4 serves
its whole v3 API as JSON at ``/v3/`` (grpc-gateway), so this module speaks it
directly through ``requests`` (maintained, already installed with the Docker
SDK): every reply's header, every error and every timeout are ours to map.

Outcomes are mapped as the harness's histories need them (see
``workloads/base.py``): ``NotSent`` -- the connection was refused or could
not be made, nothing reached a server (a definite ``fail``); ``Refused`` --
the server answered with an error that means nothing was applied (a definite
``fail``); ``Indeterminate`` -- a timeout, a connection lost mid-call, or an
error after which the request may still commit (``info``). Reads may treat
every error as ``fail``: a read changes nothing.

Integers in the gateway's JSON (revisions, lease ids) are strings (proto3's
int64 mapping); keys and values are base64.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests

API = "/v3"
CONNECT_TIMEOUT_S = 1.0
# Require a leader: a member cut off from the leader refuses (ErrNoLeader)
# instead of serving a stale watch or waiting out a proposal (etcd's
# rpctypes.MetadataRequireLeaderKey, passed as gRPC metadata by the gateway).
REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}

# Server errors after which nothing was applied (etcdserver/api/v3rpc/rpctypes).
DEFINITE_ERRORS = (
    "etcdserver: too many requests",
    "etcdserver: requested lease not found",
    "etcdserver: mvcc: required revision has been compacted",
    "etcdserver: mvcc: required revision is a future revision",
    "etcdserver: request is too large",
    "etcdserver: duplicate key given in txn request",
    "etcdserver: key is not provided",
    "etcdserver: not capable",
    "etcdserver: no leader",  # refused up front (require-leader), never proposed
    "etcdserver: unhealthy cluster",
    "etcdserver: permission denied",
)


class EtcdError(Exception):
    """Base of the mapped outcomes; ``str`` is a short name for histories."""


class NotSent(EtcdError):
    """Nothing reached a server (connect refused / failed): definite."""


class Refused(EtcdError):
    """The server answered with an error that applied nothing: definite."""


class Indeterminate(EtcdError):
    """The request may or may not have taken effect."""


def b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> str:
    return base64.b64decode(text or "").decode("utf-8", "replace")


def prefix_end(prefix: str) -> bytes:
    """The range end covering every key that starts with ``prefix`` (etcd's
    ``clientv3.GetPrefixRangeEnd``)."""
    data = bytearray(prefix.encode())
    for i in range(len(data) - 1, -1, -1):
        if data[i] < 0xFF:
            data[i] += 1
            return bytes(data[: i + 1])
    return b"\0"


def revision_of(reply: dict[str, Any]) -> int | None:
    """The header revision of a reply (an int), or None."""
    rev = (reply.get("header") or {}).get("revision")
    return int(rev) if rev is not None else None


def error_text(status: int, body: str) -> str:
    """The server's error message from a gateway error body."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}: {body.strip()[:200]}"
    if isinstance(data, dict):
        msg = data.get("error") or data.get("message")
        if msg:
            return str(msg)
    return f"HTTP {status}: {body.strip()[:200]}"


def classify(message: str) -> type[EtcdError]:
    """Refused (definite) or Indeterminate, from a server error message."""
    return Refused if any(message.startswith(d) for d in DEFINITE_ERRORS) else Indeterminate


class Gateway:
    """A connection to one member at a time of an etcd cluster.

    ``endpoints`` are "host:port" client addresses in the order to try
    (the runner shuffles them per client). A call that cannot connect moves
    to the next endpoint (``NotSent``); a call that loses its connection
    mid-way also moves on (``Indeterminate``): the next call goes elsewhere,
    as clientv3's balancer does.
    """

    def __init__(self, endpoints: list[str], timeout_s: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint (host:port)")
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self._i = 0
        self._session = requests.Session()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._i % len(self.endpoints)]

    def rotate(self) -> None:
        """Use the next endpoint from now on."""
        self._i = (self._i + 1) % len(self.endpoints)

    def call(self, path: str, body: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` at the current endpoint; the reply's JSON."""
        endpoint = self.endpoint
        url = f"http://{endpoint}{API}/{path.lstrip('/')}"
        read_timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            resp = self._session.post(url, json=body, headers=REQUIRE_LEADER, timeout=(CONNECT_TIMEOUT_S, read_timeout))
        except requests.exceptions.ConnectTimeout as exc:
            self.rotate()
            raise NotSent(f"connect-timeout: {endpoint}") from exc
        except requests.exceptions.ConnectionError as exc:
            self.rotate()
            if _never_connected(exc):
                raise NotSent(f"not-connected: {endpoint} refused the connection") from exc
            raise Indeterminate(f"connection-lost: {endpoint}: {type(exc).__name__}") from exc
        except requests.exceptions.Timeout as exc:
            self.rotate()
            raise Indeterminate(f"timeout: no answer from {endpoint} within {read_timeout:.1f}s") from exc
        except requests.exceptions.RequestException as exc:
            self.rotate()
            raise Indeterminate(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            message = error_text(resp.status_code, resp.text)
            kind = classify(message)
            if "no leader" in message or "stopped" in message:
                self.rotate()
            raise kind(message)
        try:
            data = resp.json()
        except ValueError as exc:
            raise Indeterminate(f"unreadable reply from {endpoint}: {resp.text[:200]!r}") from exc
        if not isinstance(data, dict):
            raise Indeterminate(f"unexpected reply from {endpoint}: {data!r}"[:300])
        return data

    # -- the calls the clients use -----------------------------------------
    def range(
        self, key: str, *, prefix: bool = False, serializable: bool = False, keys_only: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        if serializable:
            body["serializable"] = True
        if keys_only:
            body["keys_only"] = True
        return self.call("kv/range", body)

    def put(self, key: str, value: str, lease: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return self.call("kv/put", body)

    def txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return self.call("kv/txn", {"compare": compare, "success": success, "failure": failure or []})

    def lease_grant(self, ttl_s: int) -> int:
        reply = self.call("lease/grant", {"TTL": str(ttl_s)})
        if reply.get("error"):
            raise Refused(str(reply["error"]))
        return int(reply["ID"])

    def lease_revoke(self, lease: int) -> dict[str, Any]:
        return self.call("lease/revoke", {"ID": str(lease)})

    def lock(self, name: str, lease: int, timeout_s: float) -> dict[str, Any]:
        """etcd's v3 lock API (v3lockpb.Lock): blocks until ``name`` is held
        under ``lease``; the reply's ``key`` is the holder's key."""
        return self.call("lock/lock", {"name": b64(name), "lease": str(lease)}, timeout_s=timeout_s)

    def status(self) -> dict[str, Any]:
        return self.call("maintenance/status", {})

    def close(self) -> None:
        self._session.close()


def _never_connected(exc: BaseException) -> bool:
    """Did a requests ConnectionError happen before anything was sent (a
    refused or failed connect), rather than on an established connection?"""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if name in ("NewConnectionError", "ConnectTimeoutError") or isinstance(cur, ConnectionRefusedError):
            return True
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            cur = reason
            continue
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException) and id(arg) not in seen:
                cur = arg
                break
        else:
            cur = cur.__cause__ or cur.__context__
    return False


# -------------------------------------------------------------- the health API


def get_json(address: str, path: str, timeout_s: float = 1.0) -> dict[str, Any] | None:
    """GET http://address/path as JSON, or None when it does not answer."""
    try:
        resp = requests.get(f"http://{address}{path}", timeout=(timeout_s, timeout_s))
        data = resp.json()
    except (requests.exceptions.RequestException, ValueError):
        return None
    return data if isinstance(data, dict) else None


def post_json(address: str, path: str, body: dict[str, Any], timeout_s: float = 1.0) -> dict[str, Any] | None:
    """POST to http://address/path, the JSON reply of a 200, or None."""
    try:
        resp = requests.post(f"http://{address}{path}", json=body, timeout=(timeout_s, timeout_s))
        if resp.status_code != 200:
            return None
        data = resp.json()
    except (requests.exceptions.RequestException, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------- the watch


class WatchStream:
    """One watch stream (``POST /v3/watch``) on a key prefix, read by a
    thread of its own into a queue of responses.

    The gateway turns etcd's bidirectional Watch RPC into one HTTP request
    whose body is the create request and whose response is a stream of JSON
    lines, one ``WatchResponse`` each (``{"result": {...}}``). A stream that
    breaks (the member died, lost its leader, or sent nothing -- not even the
    periodic progress notification -- for ``idle_timeout_s``) puts one
    ``("broken", why)`` item on the queue and ends.

    Items: ``("created", header_revision)``, ``("events", [(rev, key, value,
    type)...], header_revision)``, ``("progress", header_revision)``,
    ``("canceled", reason, compact_revision)``, ``("broken", why)``.
    """

    def __init__(
        self,
        endpoint: str,
        prefix: str,
        start_revision: int,
        idle_timeout_s: float,
        on_item: Callable[[tuple[Any, ...]], None],
    ) -> None:
        self.endpoint = endpoint
        self.prefix = prefix
        self.start_revision = start_revision
        self._on_item = on_item
        self._session = requests.Session()
        self._idle_timeout_s = idle_timeout_s
        self._closed = threading.Event()
        self._resp: requests.Response | None = None
        self._thread = threading.Thread(target=self._run, name=f"etcd-watch-{endpoint}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        body: Any = {
            "create_request": {
                "key": b64(self.prefix),
                "range_end": b64(prefix_end(self.prefix)),
                "start_revision": str(self.start_revision),
                "progress_notify": True,
            }
        }
        why = "closed"
        try:
            resp = self._session.post(
                f"http://{self.endpoint}{API}/watch",
                json=body,
                headers=REQUIRE_LEADER,
                stream=True,
                timeout=(CONNECT_TIMEOUT_S, self._idle_timeout_s),
            )
            self._resp = resp
            if resp.status_code != 200:
                why = f"refused: {error_text(resp.status_code, resp.text)}"
                return
            for line in _lines(resp):
                if self._closed.is_set():
                    return
                item = parse_watch_line(line)
                if item is not None:
                    self._on_item(item)
                    if item[0] == "canceled":
                        why = f"canceled: {item[1]}"
                        return
            why = f"the stream from {self.endpoint} ended"
        except requests.exceptions.RequestException as exc:
            why = f"{type(exc).__name__} on the stream from {self.endpoint}"
        except Exception as exc:  # noqa: BLE001 - a broken stream is reported, never raised in a thread
            why = f"{type(exc).__name__}: {exc}"
        finally:
            if not self._closed.is_set():
                self._on_item(("broken", why))

    def close(self) -> None:
        self._closed.set()
        resp = self._resp
        try:
            if resp is not None:
                resp.close()
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
        self._session.close()


def _lines(resp: requests.Response) -> Iterator[bytes]:
    """The response's lines as they arrive (the gateway sends one chunk per
    watch response, each a JSON line)."""
    pending = b""
    for chunk in resp.iter_content(chunk_size=None):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def parse_watch_line(line: bytes | str) -> tuple[Any, ...] | None:
    """One gateway watch line -> a stream item (see ``WatchStream``), pure.

    Raises ValueError for a line that is not a watch response."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"not a watch response: {line!r}"[:200])
    if "error" in data:
        err = data["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        return ("canceled", f"error: {msg}", None)
    result = data.get("result")
    if not isinstance(result, dict):
        raise ValueError(f"not a watch response: {line!r}"[:200])
    rev = revision_of(result)
    if result.get("canceled"):
        compact = result.get("compact_revision")
        return (
            "canceled",
            str(result.get("cancel_reason") or "canceled by the server"),
            int(compact) if compact not in (None, "0") else None,
        )
    if result.get("created"):
        return ("created", rev)
    events = result.get("events") or []
    if not events:
        return ("progress", rev)
    out = []
    for ev in events:
        kv = ev.get("kv") or {}
        out.append(
            (int(kv.get("mod_revision", 0)), unb64(kv.get("key")), unb64(kv.get("value")), str(ev.get("type", "PUT")))
        )
    return ("events", out, rev)
