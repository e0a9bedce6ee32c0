"""The backend protocol: how a cluster of nodes comes to exist.

A backend turns (spec, db, run dir) into a ``Cluster``: running nodes with
client addresses, that the nemesis can fault (``nemesis.base.FaultTarget``)
and the runner can wait on and tear down. A backend knows nothing of any
database's formats: it runs what the database's ``prepare`` returns and asks
the database for each node's status (``harness/dbs/base.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class SetupError(Exception):
    """The cluster could not be brought up; the message names the log."""


@runtime_checkable
class Cluster(Protocol):
    """Running nodes. Implements nemesis.base.FaultTarget as well."""

    nodes: list[str]

    # -- addresses --
    def client_address(self, node: str) -> str:
        """ "127.0.0.1:port" of the node's client port."""

    def connect_string(self, nodes: list[str] | None = None) -> str:
        """ "127.0.0.1:p1,127.0.0.1:p2" for ``nodes`` (all by default)."""

    # -- health --
    def wait_ready(self, timeout_s: float) -> None:
        """Block until every node serves and (a ``Primary`` database) one
        leads: ``harness.dbs.base.wait_until_ready``, shared by every backend.

        Raises SetupError (naming the log directory) on timeout."""

    def node_status(self, node: str) -> Any:
        """The database's ``NodeStatus`` of the node (role, term, applied)."""

    def collect_logs(self, dest_dir: Path) -> list[Path]:
        """Copy every node's log into dest_dir; returns the copied paths."""

    def teardown(self) -> None:
        """Stop every process and proxy. Unconditional and idempotent."""

    # -- faults (nemesis.base.FaultTarget) --
    def drop(self, src: str, dst: str) -> None: ...
    def heal(self) -> None: ...
    def pause(self, node: str) -> None: ...
    def resume(self, node: str) -> None: ...
    def kill(self, node: str) -> None: ...
    def start(self, node: str) -> None: ...
    def leader(self) -> str | None: ...

    def __enter__(self) -> Cluster: ...
    def __exit__(self, *exc: Any) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """Makes clusters. ``create`` starts the nodes but does not wait_ready."""

    name: str

    def create(self, spec: Any, db: Any, run_dir: Path) -> Cluster:
        """``spec`` needs ``.nodes`` (an int or a list of names)."""
