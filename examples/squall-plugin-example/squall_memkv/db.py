"""memkv as a squall database (``--db memkv``).

One node only (memkv does not replicate). The node runs the server from this
package with the interpreter the backend names (``NodeContext.python``), its
log under ``<node dir>/data`` (where the ``disk`` fault would look). Status
is memkv's own ``status`` request; clients: squall's ``register`` interface
and memkv's own ``memkv-incr``.

TEST ONLY: ``--unsafe-db-fault stale-reads`` starts the server with
``--bug stale-reads`` (through ``prepare``, like every option).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.dbs.base import DBBase, HostNeeds, NodeContext, NodeLaunch, NodeStatus, SetupError
from squall_memkv.client import Conn, IncrClient, RegisterClient

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


class _Clients:
    """What memkv offers for one interface: nothing to set up, fresh clients."""

    converge_paths: tuple[str, ...] = ()  # one node: nothing to compare

    def __init__(self, make: Any) -> None:
        self.make = make

    def setup(self, hosts: str) -> None:
        pass

    def client(self) -> Any:
        return self.make()


class MemKV(DBBase):
    """memkv, an example database: one process, an fsynced log."""

    name = "memkv"
    peer_kinds = ("peer",)
    interfaces = ("register", "memkv-incr")
    unsafe_faults = ("stale-reads",)  # harness.dbs.base.UnsafeFaults

    def __init__(self, bug: str | None = None) -> None:
        if bug and bug not in self.unsafe_faults:
            raise SetupError(f"unknown memkv test fault {bug!r}; allowed: {', '.join(self.unsafe_faults)}")
        self.bug = bug

    def supported_node_counts(self) -> tuple[int, ...]:
        return (1,)

    def default_node_count(self) -> int:
        return 1

    def host_needs(self) -> HostNeeds:  # harness.dbs.base.Installs: a plain python3 runs it
        return HostNeeds(probe="command -v python3")

    def prepare(self, node: NodeContext) -> NodeLaunch:
        argv = [
            node.python,
            "-m",
            "squall_memkv.server",
            "--host",
            node.listen_host,
            "--port",
            str(node.ports.client),
            "--data",
            node.path("data"),
        ]
        if self.bug:
            argv += ["--bug", self.bug]
        env = {"PYTHONUNBUFFERED": "1"}
        if node.local:  # this package, wherever it was installed
            env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p)
        return NodeLaunch(argv=argv, env=env, dirs=("data",), log=f"{node.name}.log")

    def status(self, address: str, timeout_s: float = 1.0) -> NodeStatus:
        conn = Conn()
        conn.open(address, "any", timeout_s)
        try:
            reply, otherwise = conn.call({"op": "status"}, None)
        finally:
            conn.close()
        if reply is None:
            return NodeStatus.down(str(otherwise.get("error")))
        return NodeStatus(
            role=str(reply.get("role")),
            serving=bool(reply.get("ok")),
            term=1,
            applied=reply.get("index"),
            details={"keys": reply.get("keys")},
        )

    def claims_leadership(self, status: NodeStatus) -> bool:  # harness.dbs.base.Primary
        return status.role == "standalone"

    def clients(self, interface: str, settings: Mapping[str, Any]) -> _Clients:
        if interface == "register":
            return _Clients(RegisterClient)
        if interface == "memkv-incr":
            return _Clients(IncrClient)
        raise self.not_offered(interface)


def make(options: dict[str, Any] | None = None) -> MemKV:
    """memkv, a one-process key-value database (an example plugin)."""
    bug = (options or {}).get("unsafe_db_fault")
    return MemKV(bug=str(bug) if bug else None)
