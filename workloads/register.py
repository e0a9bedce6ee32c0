"""The register workload: per-key registers on znodes ``/squall/register/<k>``.

Ops (plain dicts; values are ``[key, ...]`` so a history splits by key):

- ``{"f": "read", "value": [k, None]}`` -> ok ``[k, v]`` (v None = no znode);
  a local read, or ``sync`` then read with ``reads="sync"``.
- ``{"f": "write", "value": [k, v]}``: setData (create on first write).
- ``{"f": "cas", "value": [k, [old, new]]}``: read (data, version); if the
  data is ``old``, setData(new, version) -- ok, or BadVersion -> fail.

Why this cas is sound. Every value the op sources write to a key is unique
(each client slot counts in its own residue class, see ``ops``), so a znode version pins the value: the znode held
``old`` at version ``ver`` and, since ``old`` is written once, at no later
version. setData(new, ver) commits at the leader iff the version is still
``ver``, i.e. iff the register still holds ``old`` at that point: a true
compare-and-set linearized at the setData. BadVersion means the version moved
on, so the register no longer holds ``old``: a sound ``fail``. When the read
shows another value, the read alone may be stale (local reads are only
sequentially consistent), so the mismatch is confirmed through the leader
with ``multi([check(path, ver)])``: if the version is still ``ver`` the
register holds the read value, not ``old`` -> ``fail``; otherwise read again
(up to 3 rounds, then ``info``).

``zxid`` of every ok/fail op is the reply header's zxid (see workloads/_zk.py).

Checks: writes and cas linearizable per key (cas-register model), and every
op, reads included, sequentially consistent in ZooKeeper's sense (a total
order respecting real time among writes and each process's own order); each
session's zxids never go back and it reads its own writes
(``checkers.session_order``); with ``reads="sync"``, every read sees every
write acknowledged before it was invoked (``checkers.fresh_reads``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator

from kazoo.exceptions import NoNodeError, NodeExistsError

from checkers.history import Op
from checkers.result import merge, run_checker
from workloads import _zk
from workloads.checks import (fresh_after_sync, linearizable_per_key, sequential_registers,
                              session_order)

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
            return {"type": "fail", "value": value, "zxid": None,
                    "error": f"bad register op {op!r}: f must be read/write/cas, value [key, arg]"}
        key, arg = value
        path = f"{BASE}/{key}"
        body = {"read": lambda: [key, self._read(path)],
                "write": lambda: self._write(path, key, arg),
                "cas": lambda: self._cas(path, key, arg)}[f]
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


@dataclass
class RegisterWorkload:
    """``keys`` registers live at once; they get about ``ops_per_key`` ops in
    all, then fresh keys replace them (short per-key histories keep the
    linearizability search cheap)."""

    name: str = "register"
    reads: str = "local"
    keys: int = 3
    ops_per_key: int = 120
    read_fraction: float = 0.5
    cas_fraction: float = 0.25
    budget_s: float = 60.0
    final_each_thread: bool = False
    converge_paths: tuple[str, ...] = (BASE,)
    # Progress (checkers.availability): reads and writes answered; a cas the
    # server refused (BadVersion, a confirmed mismatch) is an answer.
    progress_kinds = {"read": "read", "write": "write", "cas": "write"}
    progress_answered: tuple[str, ...] = ("BadVersion", "cas-mismatch")

    def setup(self, hosts: str) -> None:
        _zk.with_setup_connection(hosts, lambda zk: zk.ensure_path(BASE))

    def client(self) -> RegisterClient:
        return RegisterClient(self.reads)

    def ops(self, rng: random.Random, thread: int = 0, threads: int = 1) -> Iterator[dict[str, Any]]:
        """Slot ``thread``'s ops. Keys come in windows of ``keys`` fresh keys;
        in each window the slot gives every key ``ceil(ops_per_key / threads)``
        ops in a random order, so slots that keep pace share their keys (ops
        on a key are concurrent) and no key gets more than ``ops_per_key +
        threads - 1`` ops in all. Written values are ``counter * threads +
        thread``: unique per key across every slot (see the module doc)."""
        per_key = max(1, -(-self.ops_per_key // threads))
        written: dict[int, list[int]] = {}
        counter = 0
        window = 0
        while True:
            keys = [window * self.keys + i for i in range(self.keys)]
            order = [k for k in keys for _ in range(per_key)]
            rng.shuffle(order)
            for k in order:
                mine = written.setdefault(k, [])
                r = rng.random()
                if r < self.read_fraction:
                    yield {"f": "read", "value": [k, None]}
                    continue
                counter += 1
                value = counter * threads + thread
                if r < self.read_fraction + self.cas_fraction and mine:
                    yield {"f": "cas", "value": [k, [rng.choice(mine[-3:]), value]]}
                else:
                    yield {"f": "write", "value": [k, value]}
                mine.append(value)
            for k in keys:
                written.pop(k, None)
            window += 1

    def final_ops(self) -> list[dict[str, Any]]:
        return []

    def check(self, history: list[Op]) -> Any:
        results = [
            run_checker("register-linearizable", linearizable_per_key, history,
                        budget_s=self.budget_s),
            run_checker("register-sequential", sequential_registers, history,
                        budget_s=self.budget_s),
            run_checker("session-order", session_order, history),
        ]
        if self.reads == "sync":
            results.append(run_checker("fresh-after-sync", fresh_after_sync, history))
        return merge(results, checker="register")


def make(options: dict[str, Any] | None = None) -> RegisterWorkload:
    options = dict(options or {})
    reads = options.get("reads", "local") or "local"
    if reads not in ("local", "sync"):
        raise ValueError(f"register reads must be 'local' or 'sync', got {reads!r}")
    w = RegisterWorkload(reads=reads)
    for name in ("keys", "ops_per_key", "budget_s"):
        if name in options:
            setattr(w, name, type(getattr(w, name))(options[name]))
    return w
