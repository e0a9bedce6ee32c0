"""etcd's workload clients: register, set, lock and watch over the v3 JSON
gateway (``harness/dbs/etcd_gateway.py``).

Each client implements ``workloads.base.Client`` (``open``/``invoke``/
``close``) and returns the same values as the ZooKeeper clients for the same
ops, so the register, set and lock workloads' op sources and checkers run
unchanged; histories record etcd's revision where ZooKeeper's record the zxid
(``zxid`` = the reply header's revision: for a write, the revision it
created; for a read, the member's revision when it read).

Reads: ``reads="linearizable"`` (etcd's default, a ReadIndex through the
leader) or ``"serializable"`` (``--reads local``: the member answers from its
own state). etcd promises serializable reads no order across members, so a
client -- as ZooKeeper's does when it reconnects -- never returns a
serializable read from a member behind the revision it has already seen: such
a read is a ``fail`` (``member-behind``; a read changes nothing) and the client
moves to the next member. The order the checkers then test (sequential
consistency, the revision never going back per process) is the one etcd gives
a client that stays on members at least as new as what it saw.

TEST ONLY faults (``unsafe_fault``; inert unless armed; armed only by
``squall run --unsafe-db-fault NAME``, which hands the name to the database's
clients): ``stale-reads`` -- the register and set clients remember the first
answer they got for a key and serve every second read of it from that memory
instead of asking the server; ``drop-watch-events`` -- the watch client
drops every seventh event it receives. Both are client-side: etcd itself is
unchanged; they prove the checkers catch a broken database.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.dbs.etcd_gateway import (
    EtcdError,
    Gateway,
    NotSent,
    Refused,
    WatchStream,
    b64,
    revision_of,
    unb64,
)

READ_MODES = ("linearizable", "serializable")
UNSAFE_FAULTS = ("stale-reads", "drop-watch-events")
REGISTER_PREFIX = "/squall/register/"
SET_PREFIX = "/squall/set/"
LOCK_PREFIX = "/squall/lock/"
LOCK_NAME = LOCK_PREFIX + "lock"
LOCK_RESOURCES = {"fenced-write": LOCK_PREFIX + "fenced", "unfenced-write": LOCK_PREFIX + "unfenced"}
WATCH_PREFIX = "/squall/watch/"
DROP_EVERY = 7  # drop-watch-events: every seventh event is dropped


class Definite(Exception):
    """A workload-level refusal (a cas whose compare failed, a lock not
    acquired): reported as ``fail`` with the reply's revision."""

    def __init__(self, message: str, revision: int | None = None) -> None:
        super().__init__(message)
        self.revision = revision


def _int(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


class EtcdClient:
    """The shared part of every etcd workload client: the gateway, the
    ok/fail/info mapping, the serializable-read guard and the test-only
    fault's switch."""

    def __init__(self, reads: str = "linearizable", unsafe_fault: str | None = None) -> None:
        if reads not in READ_MODES:
            raise ValueError(f"etcd reads must be one of {', '.join(READ_MODES)}, got {reads!r}")
        if unsafe_fault is not None and unsafe_fault not in UNSAFE_FAULTS:
            raise ValueError(f"unknown etcd test fault {unsafe_fault!r}; allowed: {', '.join(UNSAFE_FAULTS)}")
        self.reads = reads
        self.unsafe_fault = unsafe_fault
        self.gw: Gateway | None = None
        self.seen = 0  # the highest revision this client has seen

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.gw = Gateway([h.strip() for h in hosts.split(",") if h.strip()], timeout_s)

    def close(self) -> None:
        gw, self.gw = self.gw, None
        if gw is not None:
            gw.close()

    @property
    def serializable(self) -> bool:
        return self.reads == "serializable"

    def _gw(self) -> Gateway:
        if self.gw is None:
            raise NotSent("not-connected: client not opened")
        return self.gw

    def read_range(
        self, key: str, *, prefix: bool = False, keys_only: bool = False, linearizable: bool = False
    ) -> dict[str, Any]:
        """A range in this client's read mode (or linearizable when asked),
        guarded: a serializable answer older than what the client saw is
        refused and the client moves on."""
        gw = self._gw()
        serializable = self.serializable and not linearizable
        reply = gw.range(key, prefix=prefix, serializable=serializable, keys_only=keys_only)
        rev = revision_of(reply) or 0
        if serializable and rev < self.seen:
            behind = gw.endpoint
            gw.rotate()
            raise Refused(f"member-behind: {behind} answered at revision {rev}, this client has seen {self.seen}")
        return reply

    def run(self, body: Callable[[], tuple[Any, int | None]], fail_value: Any, read: bool = False) -> dict[str, Any]:
        """Run ``body`` (returns (value, revision)); map its outcome.

        NotSent and server refusals -> fail; Definite -> fail with its
        revision; anything else -> info, except for reads (``read``), whose
        every error is a fail: a read changes nothing."""
        gw = self.gw
        server = gw.endpoint if gw is not None else None
        try:
            value, rev = body()
        except Definite as exc:
            return self._answered(
                {"type": "fail", "value": fail_value, "error": str(exc), "zxid": exc.revision}, server
            )
        except (NotSent, Refused) as exc:
            return {"type": "fail", "value": fail_value, "error": str(exc), "zxid": None}
        except EtcdError as exc:
            return {"type": "fail" if read else "info", "value": fail_value, "error": str(exc), "zxid": None}
        except Exception as exc:  # noqa: BLE001 - unknown outcome
            return {
                "type": "fail" if read else "info",
                "value": fail_value,
                "error": f"{type(exc).__name__}: {exc}",
                "zxid": None,
            }
        return self._answered({"type": "ok", "value": value, "error": None, "zxid": rev}, server)

    def _answered(self, out: dict[str, Any], server: str | None) -> dict[str, Any]:
        rev = out.get("zxid")
        if rev is not None:
            self.seen = max(self.seen, rev)
            out["server"] = server
        return out


# ---------------------------------------------------------------- register


class EtcdRegisterClient(EtcdClient):
    """The register workload's ops (``workloads/register.py``) on keys
    ``/squall/register/<k>``: ``read`` a range, ``write`` a put, ``cas`` a
    txn comparing the value (an atomic compare-and-set: a failed compare
    is a definite ``fail``, ``cas-mismatch``)."""

    def __init__(self, reads: str = "linearizable", unsafe_fault: str | None = None) -> None:
        super().__init__(reads, unsafe_fault)
        self._cache: dict[Any, tuple[int | None, int]] = {}  # stale-reads: first answer per key
        self._reads = 0

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        if f not in ("read", "write", "cas") or not isinstance(value, (list, tuple)) or len(value) != 2:
            return {
                "type": "fail",
                "value": value,
                "zxid": None,
                "error": f"bad register op {op!r}: f must be read/write/cas, value [key, arg]",
            }
        key, arg = value
        path = f"{REGISTER_PREFIX}{key}"
        if f == "read":
            return self.run(lambda: self._read(key, path), list(value), read=True)
        if f == "write":
            return self.run(lambda: self._write(path, key, arg), list(value))
        return self.run(lambda: self._cas(path, key, arg), list(value))

    def _read(self, key: Any, path: str) -> tuple[list[Any], int | None]:
        if self.unsafe_fault == "stale-reads":
            self._reads += 1
            if key in self._cache and self._reads % 2 == 0:
                cached, at = self._cache[key]  # TEST ONLY: an answer from memory, not from etcd
                return [key, cached], at
        reply = self.read_range(path)
        kvs = reply.get("kvs") or []
        v = _int(unb64(kvs[0].get("value"))) if kvs else None
        rev = revision_of(reply)
        if self.unsafe_fault == "stale-reads" and rev is not None:
            self._cache.setdefault(key, (v, rev))
        return [key, v], rev

    def _write(self, path: str, key: Any, v: Any) -> tuple[list[Any], int | None]:
        reply = self._gw().put(path, "" if v is None else str(v))
        return [key, v], revision_of(reply)

    def _cas(self, path: str, key: Any, arg: Any) -> tuple[list[Any], int | None]:
        old, new = arg
        reply = self._gw().txn(
            compare=[{"key": b64(path), "target": "VALUE", "result": "EQUAL", "value": b64(str(old))}],
            success=[{"request_put": {"key": b64(path), "value": b64(str(new))}}],
        )
        rev = revision_of(reply)
        if not reply.get("succeeded"):
            raise Definite(f"cas-mismatch: register does not hold {old!r}", rev)
        return [key, [old, new]], rev


# --------------------------------------------------------------------- set


class EtcdSetClient(EtcdClient):
    """The set workload's ops (``workloads/set.py``): ``add`` n creates key
    ``/squall/set/e-<n>`` (a txn that puts only if the key was never
    created); ``read`` lists the keys in the client's read mode;
    ``final-read`` lists them linearizably."""

    def __init__(self, reads: str = "linearizable", unsafe_fault: str | None = None) -> None:
        super().__init__(reads, unsafe_fault)
        self._cached: tuple[list[Any], int | None] | None = None
        self._reads = 0

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        if f == "add" and isinstance(value, int) and not isinstance(value, bool):
            return self.run(lambda: self._add(value), value)
        if f == "read":
            return self.run(lambda: self._read(False), None, read=True)
        if f == "final-read":
            return self.run(lambda: self._read(True), None, read=True)
        return {
            "type": "fail",
            "value": value,
            "zxid": None,
            "error": f"bad set op {op!r}: f must be add (int value), read or final-read",
        }

    def _add(self, n: int) -> tuple[int, int | None]:
        key = f"{SET_PREFIX}e-{n}"
        reply = self._gw().txn(
            compare=[{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            success=[{"request_put": {"key": b64(key), "value": ""}}],
        )
        rev = revision_of(reply)
        if not reply.get("succeeded"):
            raise Definite("exists: the element was created before", rev)
        return n, rev

    def _read(self, final: bool) -> tuple[list[Any], int | None]:
        if self.unsafe_fault == "stale-reads" and not final:
            self._reads += 1
            if self._cached is not None and self._reads % 2 == 0:
                return self._cached  # TEST ONLY: an answer from memory, not from etcd
        reply = self.read_range(SET_PREFIX, prefix=True, keys_only=True, linearizable=final)
        out: list[Any] = []
        for kv in reply.get("kvs") or []:
            name = unb64(kv.get("key"))[len(SET_PREFIX) :]
            if name.startswith("e-"):
                n = _int(name[2:])
                out.append(n if n is not None else name)
            else:
                out.append(name)  # an unexpected element, kept for the checker
        result = (sorted(out, key=str) if any(isinstance(x, str) for x in out) else sorted(out)), revision_of(reply)
        if self.unsafe_fault == "stale-reads" and self._cached is None:
            self._cached = result
        return result


# -------------------------------------------------------------------- lock


class EtcdLockClient(EtcdClient):
    """The lock workload's ops (``workloads/lock.py``) with etcd's lease-based
    lock: grant a lease (``ttl_s``), acquire ``/squall/lock/lock`` with the v3
    lock API under it (waiting at most ``acquire_timeout_s``), read the
    resource's counter n, write n+1, revoke the lease (which releases the
    lock).

    - ``fenced-write``: the write is a txn that commits only while the lock
      key still exists with the create revision it had when acquired -- the
      lock's revision, the *fencing token* Jepsen's etcd analysis recommends:
      a holder whose lease expired (a pause, a partition) has lost its key,
      and its late write is refused (``fence-rejected``).
    - ``unfenced-write``: a plain put. etcd's locks promise no mutual
      exclusion once a lease can expire under a holder, so overlapping
      unfenced writes are *findings* (the check reports them, valid).

    ok value: ``{"read": n, "wrote": n+1, "lock": key, "token": lock's
    revision, "write_zxid": the write's revision}``.
    """

    def __init__(
        self,
        reads: str = "linearizable",
        unsafe_fault: str | None = None,
        ttl_s: int = 3,
        acquire_timeout_s: float = 2.0,
    ) -> None:
        super().__init__(reads, unsafe_fault)
        self.ttl_s = ttl_s
        self.acquire_timeout_s = acquire_timeout_s

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f = op.get("f")
        if f not in LOCK_RESOURCES:
            return {
                "type": "fail",
                "value": op.get("value"),
                "zxid": None,
                "error": f"bad lock op {op!r}: f must be fenced-write or unfenced-write",
            }
        return self.run(lambda: self._locked_write(str(f)), None)

    def _locked_write(self, f: str) -> tuple[dict[str, Any], int | None]:
        gw = self._gw()
        try:
            lease = gw.lease_grant(self.ttl_s)
        except EtcdError as exc:
            raise Definite(f"lock-timeout: no lease ({exc})") from exc  # nothing written yet
        try:
            try:
                held = gw.lock(LOCK_NAME, lease, self.acquire_timeout_s)
            except EtcdError as exc:
                raise Definite(f"lock-timeout: the lock was not acquired ({exc})") from exc
            lock_key = unb64(held.get("key"))
            resource = LOCK_RESOURCES[f]
            # the counter and the lock key's create revision (the token), in one read
            try:
                reply = gw.txn(
                    compare=[],
                    success=[{"request_range": {"key": b64(resource)}}, {"request_range": {"key": b64(lock_key)}}],
                )
            except EtcdError as exc:
                raise Definite(f"read-failed: nothing written ({exc})") from exc
            ranges = [r.get("response_range") or {} for r in reply.get("responses") or []]
            counter = (ranges[0].get("kvs") or [{}])[0] if ranges else {}
            lock_kv = (ranges[1].get("kvs") or [None])[0] if len(ranges) > 1 else None
            n = _int(unb64(counter.get("value"))) or 0
            if lock_kv is None:
                raise Definite("lock-lost: the lock key was gone before the write", revision_of(reply))
            token = int(lock_kv["create_revision"])
            put = {"request_put": {"key": b64(resource), "value": b64(str(n + 1))}}
            if f == "fenced-write":
                wrote = gw.txn(
                    compare=[
                        {"key": b64(lock_key), "target": "CREATE", "result": "EQUAL", "create_revision": str(token)}
                    ],
                    success=[put],
                )
                rev = revision_of(wrote)
                if not wrote.get("succeeded"):
                    raise Definite("fence-rejected: the lock key is gone (its lease expired)", rev)
            else:
                rev = revision_of(gw.put(resource, str(n + 1)))
            return {"read": n, "wrote": n + 1, "lock": lock_key, "token": token, "write_zxid": rev}, rev
        finally:
            try:
                gw.lease_revoke(lease)  # releases the lock (its key is attached to the lease)
            except EtcdError:
                pass  # the lease expires by itself after ttl_s


# ------------------------------------------------------------------- watch


class EtcdWatchClient(EtcdClient):
    """The etcd watch workload's ops (``workloads/watch_stream.py``): one watch
    stream per client on the prefix ``/squall/watch/``, kept by a thread and
    resumed from the last seen revision whenever it breaks.

    - ``{"f": "write", "value": [key, n]}``: put -> ok ``[key, n, revision]``.
    - ``{"f": "watch", "value": back}``: the events received since the
      previous watch op: ok ``{"events": [[rev, key, value], ...],
      "resumed": [[from_revision, endpoint], ...]}``; the op that opens the
      stream adds ``"start"``: the start revision, ``back`` revisions before
      the current one (so the stream replays history first).
    - ``{"f": "final-watch", "value": null}``: put a fence key
      (``fence-<client>``), then wait until the stream has delivered the
      fence's event: ok ``{..., "fence": [key, value, revision]}``; every
      event up to that revision must then have been delivered.

    Every watch op returns the events the client received, whatever
    happened: they are what the stream delivered.
    """

    def __init__(
        self,
        reads: str = "linearizable",
        unsafe_fault: str | None = None,
        idle_timeout_s: float = 5.0,
        fence_wait_s: float = 10.0,
    ) -> None:
        super().__init__(reads, unsafe_fault)
        self.idle_timeout_s = idle_timeout_s
        self.fence_wait_s = fence_wait_s
        self._lock = threading.Condition()
        self._items: list[tuple[Any, ...]] = []
        self._stream: WatchStream | None = None
        self._start: int | None = None
        self._last = 0  # the last delivered event's revision
        self._received = 0
        self._fence_n = 0
        self.client_id = secrets.token_hex(4)

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        super().close()

    def _on_item(self, stream: WatchStream, item: tuple[Any, ...]) -> None:
        with self._lock:
            if stream is self._stream:
                self._items.append(item)
                self._lock.notify_all()

    def _open_stream(self, start: int) -> None:
        gw = self._gw()
        holder: list[WatchStream] = []

        def on_item(item: tuple[Any, ...]) -> None:
            while not holder:  # the constructor's thread may answer before it returns
                time.sleep(0.001)
            self._on_item(holder[0], item)

        with self._lock:
            stream = WatchStream(gw.endpoint, WATCH_PREFIX, start, self.idle_timeout_s, on_item)
            self._stream = stream
            holder.append(stream)

    def invoke(self, op: dict[str, Any]) -> dict[str, Any]:
        f, value = op.get("f"), op.get("value")
        if (
            f == "write"
            and isinstance(value, (list, tuple))
            and len(value) == 2
            and isinstance(value[0], str)
            and isinstance(value[1], int)
        ):
            key, n = value
            return self.run(lambda: self._write(key, n), list(value))
        if f == "watch" and (value is None or (isinstance(value, int) and value >= 0)):
            return self._watch(int(value or 0))
        if f == "final-watch":
            return self._final()
        return {
            "type": "fail",
            "value": value,
            "zxid": None,
            "error": f"bad watch op {op!r}: f must be write [key, int], watch (int >= 0 or null) or final-watch",
        }

    def _write(self, key: str, n: int) -> tuple[list[Any], int | None]:
        reply = self._gw().put(WATCH_PREFIX + key, str(n))
        rev = revision_of(reply)
        return [key, n, rev], rev

    def _ensure_stream(self, back: int, out: dict[str, Any]) -> None:
        """Open the stream (first op) or resume it after a break."""
        gw = self._gw()
        if self._start is None:
            reply = gw.range(WATCH_PREFIX, prefix=True, keys_only=True)  # the current revision
            current = revision_of(reply) or 1
            self._start = max(1, current - back)
            self._open_stream(self._start)
            out["start"] = self._start
            return
        if self._stream is None:
            gw.rotate()
            frm = self._last + 1 if self._last else self._start
            self._open_stream(frm)
            out.setdefault("resumed", []).append([frm, gw.endpoint])

    def _drain(self, out: dict[str, Any]) -> None:
        """Move the received items into ``out`` (events, progress, breaks)."""
        with self._lock:
            items, self._items = self._items, []
        events = out.setdefault("events", [])
        for item in items:
            kind = item[0]
            if kind == "events":
                for rev, key, value, type_ in item[1]:
                    self._received += 1
                    if self.unsafe_fault == "drop-watch-events" and self._received % DROP_EVERY == 0:
                        continue  # TEST ONLY: an event etcd delivered, dropped by the client
                    events.append([rev, key.removeprefix(WATCH_PREFIX), value] + ([] if type_ == "PUT" else [type_]))
                    self._last = max(self._last, rev)
            elif kind == "canceled":
                out.setdefault("canceled", []).append([item[1], item[2]])
                if item[2] is not None:
                    out["compacted"] = item[2]
            elif kind == "broken":
                out.setdefault("breaks", []).append(item[1])
                with self._lock:
                    stream, self._stream = self._stream, None
                if stream is not None:
                    stream.close()

    def _watch(self, back: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            self._drain(out)
            self._ensure_stream(back, out)
        except EtcdError as exc:
            out["error"] = str(exc)
        self._drain(out)
        return {"type": "ok", "value": out, "error": None, "zxid": None}

    def _final(self) -> dict[str, Any]:
        """Write a fence and wait for its event (see the class doc)."""
        out: dict[str, Any] = {}
        self._fence_n += 1
        key = f"fence-{self.client_id}-{self._fence_n}"
        try:
            self._drain(out)
            self._ensure_stream(0, out)
            reply = self._gw().put(WATCH_PREFIX + key, key)
        except EtcdError as exc:
            self._drain(out)
            out["error"] = str(exc)
            return {"type": "info", "value": out, "error": str(exc), "zxid": None}
        rev: int = revision_of(reply) or 0
        out["fence"] = [key, key, rev]
        deadline = time.monotonic() + self.fence_wait_s
        while self._last < rev and time.monotonic() < deadline:
            with self._lock:
                if not self._items:
                    self._lock.wait(0.2)
            self._drain(out)
            if self._stream is None:
                try:
                    self._ensure_stream(0, out)
                except EtcdError as exc:
                    out.setdefault("breaks", []).append(f"resume failed: {exc}")
                    time.sleep(0.2)
        self._drain(out)
        if self._last < rev:
            return {
                "type": "info",
                "value": out,
                "zxid": rev,
                "error": f"fence-timeout: the stream had not delivered revision {rev} "
                f"after {self.fence_wait_s:.0f}s (last event {self._last})",
            }
        return {"type": "ok", "value": out, "error": None, "zxid": rev, "server": self._gw().endpoint}


class EtcdClients:
    """The clients of one interface (``workloads.base.ClientFactory``):
    ``setup`` checks that the cluster answers (and, for the lock, creates the
    two counters at 0); ``client`` makes a fresh, unopened client."""

    def __init__(
        self,
        interface: str,
        reads: str,
        unsafe_fault: str | None,
        converge_paths: tuple[str, ...],
        setup_timeout_s: float = 15.0,
    ) -> None:
        if interface not in CLIENT_CLASSES:
            raise ValueError(f"no etcd client for {interface!r}; etcd offers {', '.join(CLIENT_CLASSES)}")
        self.interface = interface
        self.reads = reads
        self.unsafe_fault = unsafe_fault
        self.converge_paths = tuple(converge_paths)
        self.setup_timeout_s = setup_timeout_s

    def client(self) -> EtcdClient:
        return CLIENT_CLASSES[self.interface](self.reads, self.unsafe_fault)

    def setup(self, hosts: str) -> None:
        gw = Gateway([h.strip() for h in hosts.split(",") if h.strip()], 5.0)
        deadline = time.monotonic() + self.setup_timeout_s
        try:
            while True:
                try:
                    if self.interface == "lock":
                        for key in LOCK_RESOURCES.values():
                            gw.txn(
                                compare=[
                                    {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                                ],
                                success=[{"request_put": {"key": b64(key), "value": b64("0")}}],
                            )
                    else:
                        gw.range(self.converge_paths[0], prefix=True, keys_only=True)
                    return
                except EtcdError as exc:
                    if time.monotonic() >= deadline:
                        raise RuntimeError(
                            f"etcd did not answer the {self.interface} workload's setup within "
                            f"{self.setup_timeout_s:.0f}s: {exc}"
                        ) from exc
                    time.sleep(0.3)
        finally:
            gw.close()


CLIENT_CLASSES: dict[str, type[EtcdClient]] = {
    "register": EtcdRegisterClient,
    "set": EtcdSetClient,
    "lock": EtcdLockClient,
    "watch-stream": EtcdWatchClient,
}


def snapshot(address: str, prefixes: tuple[str, ...] | list[str], timeout_s: float = 10.0) -> dict[str, Any]:
    """One member's copy of every key under ``prefixes``, read from that
    member alone (a linearizable range there: it first applies everything
    committed before the read): ``{"sync_zxid": revision, "paths": {key:
    [value, version, mod_revision]}}``, the shape ``checkers.convergence``
    compares. Raises when the member cannot answer."""
    gw = Gateway([address], timeout_s)
    try:
        found: dict[str, list[Any]] = {}
        revision = None
        for prefix in prefixes:
            reply = gw.range(prefix, prefix=True)
            rev = revision_of(reply)
            revision = rev if revision is None or (rev is not None and rev > revision) else revision
            for kv in reply.get("kvs") or []:
                found[unb64(kv.get("key"))] = [
                    unb64(kv.get("value")),
                    int(kv.get("version", 0)),
                    int(kv.get("mod_revision", 0)),
                ]
        return {"sync_zxid": revision, "paths": found}
    finally:
        gw.close()
