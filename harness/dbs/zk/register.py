"""The register interface on a ZooKeeper-protocol database: per-key registers
on znodes ``/squall/register/<k>`` (workloads/register.py has the op source
and the checks).

- read: getData (a local read), or ``sync`` then getData with ``reads="sync"``;
  a missing znode reads as None.
- write: setData (create on first write).
- cas ``[old, new]``: read (data, version); if the data is ``old``,
  setData(new, version) -- ok, or BadVersion -> fail.

Why this cas is sound. Every value the op sources write to a key is unique,
so a znode version pins the value: the znode held ``old`` at version ``ver``
and, since ``old`` is written once, at no later version. setData(new, ver)
commits at the leader iff the version is still ``ver``, i.e. iff the register
still holds ``old`` at that point: a true compare-and-set linearized at the
setData. BadVersion means the version moved on, so the register no longer
holds ``old``: a sound ``fail``. When the read shows another value, the read
alone may be stale (local reads are only sequentially consistent), so the
mismatch is confirmed through the leader with ``multi([check(path, ver)])``:
if the version is still ``ver`` the register holds the read value, not
``old`` -> ``fail``; otherwise read again (up to 3 rounds, then ``info``).

``zxid`` of every ok/fail op is the reply header's zxid (see conn.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError

from harness.dbs.zk import conn as _zk

BASE = "/squall/register"
CAS_ROUNDS = 3


def _enc(v: Any) -> bytes:
    return b"" if v is None else str(v).encode()


def _dec(data: bytes | None) -> int | None:
    if not data:
        return None
    try:
        return int(data.decode())
    except ValueError:
        return None


class RegisterClient:
    def __init__(self, reads: str = "local") -> None:
        self.reads = reads
        self.conn = _zk.ZkConn()

    def open(self, hosts: str, node: str, timeout_s: float) -> None:
        self.node = node
        self.conn.open(hosts, timeout_s)

    def close(self) -> None:
        self.conn.close()

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
        path = f"{BASE}/{key}"
        body = {
            "read": lambda: [key, self._read(path)],
            "write": lambda: self._write(path, key, arg),
            "cas": lambda: self._cas(path, key, arg),
        }[f]
        return _zk.run(self.conn, body, fail_value=list(value))

    # -- bodies (raise kazoo errors; _zk.run maps them) --
    def _get(self, path: str) -> tuple[int | None, int | None]:
        zk = self.conn.zk
        try:
            data, stat = self.conn.wait(zk.get_async(path))
        except NoNodeError:
            return None, None
        return _dec(data), stat.version

    def _read(self, path: str) -> int | None:
        if self.reads == "sync":
            self.conn.wait(self.conn.zk.sync_async(path))
        return self._get(path)[0]

    def _write(self, path: str, key: Any, v: Any) -> list[Any]:
        zk = self.conn.zk
        try:
            self.conn.wait(zk.set_async(path, _enc(v)))
        except NoNodeError:
            # First write of this key: create it. Only one of set/create/set
            # takes effect, so the write still has one linearization point.
            try:
                self.conn.wait(zk.create_async(path, _enc(v)))
            except NodeExistsError:
                self.conn.wait(zk.set_async(path, _enc(v)))
        return [key, v]

    def _cas(self, path: str, key: Any, arg: Any) -> list[Any]:
        old, new = arg
        zk = self.conn.zk
        for _ in range(CAS_ROUNDS):
            if self.reads == "sync":
                self.conn.wait(zk.sync_async(path))
            cur, version = self._get(path)
            if cur == old and version is not None:
                # BadVersion propagates: a definite fail (see module doc).
                self.conn.wait(zk.set_async(path, _enc(new), version=version))
                return [key, [old, new]]
            if self._confirm(path, version):
                raise _zk.Definite(f"cas-mismatch: register holds {cur!r}, not {old!r}")
        raise RuntimeError(f"cas: register kept changing for {CAS_ROUNDS} rounds; outcome unknown")

    def _confirm(self, path: str, version: int | None) -> bool:
        """True if, at the leader, the znode still has ``version`` (or still
        does not exist when version is None)."""
        zk = self.conn.zk
        if version is None:
            return self._absent_at_leader(path)
        t = zk.transaction()
        t.check(path, version)
        results = self.conn.wait(t.commit_async())
        return not any(isinstance(r, Exception) for r in results)

    def _absent_at_leader(self, path: str) -> bool:
        # A check on a missing znode fails with NoNode at the leader.
        t = self.conn.zk.transaction()
        t.check(path, -1)
        results = self.conn.wait(t.commit_async())
        return any(isinstance(r, NoNodeError) for r in results)


class RegisterClients:
    """Settings: ``reads`` ("local" or "sync")."""

    converge_paths: tuple[str, ...] = (BASE,)

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.reads = str(settings.get("reads", "local") or "local")
        if self.reads not in ("local", "sync"):
            raise ValueError(f"register reads must be 'local' or 'sync', got {self.reads!r}")

    def setup(self, hosts: str) -> None:
        _zk.with_setup_connection(hosts, lambda zk: zk.ensure_path(BASE))

    def client(self) -> RegisterClient:
        return RegisterClient(self.reads)
